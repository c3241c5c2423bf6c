"""Metrics release: CSV and TensorBoard together, keyed by round or step.

Thin wrapper over `tff.program`'s release managers (STYLE.md, "Results people
can use"): `CSVFileReleaseManager` rewrites the CSV atomically and, when a
key is released again (a resumed run), drops the rows at and after it, so a
resumed run never duplicates rows; `TensorBoardReleaseManager` writes the
same values as scalars.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Mapping

import numpy as np
import tensorflow_federated as tff


class MetricsRelease:
  """Releases one flat dict of scalars per key to `<dir>/<name>.csv` and TB."""

  def __init__(self, output_dir: str, *, name: str = "metrics",
               key_fieldname: str = "round", tensorboard: bool = True):
    self.csv_path = os.path.join(output_dir, f"{name}.csv")
    self._managers = [tff.program.CSVFileReleaseManager(
        self.csv_path, key_fieldname=key_fieldname)]
    if tensorboard:
      self._managers.append(tff.program.TensorBoardReleaseManager(
          os.path.join(output_dir, "tensorboard", name)))

  def release(self, values: Mapping[str, float], key: int) -> None:
    clean = {k: np.float64(v) if isinstance(v, float) else v
             for k, v in values.items()}

    async def release_all():
      await asyncio.gather(*(m.release(clean, key=int(key))
                             for m in self._managers))

    asyncio.run(release_all())


def write_json_atomically(path: str, value) -> None:
  """Writes `value` as JSON via a temporary file and a rename."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2, sort_keys=True, default=_to_builtin)
    f.write("\n")
  os.replace(tmp, path)


def write_text_atomically(path: str, text: str) -> None:
  """Writes `text` via a temporary file and a rename."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def save_weights_atomically(path: str, weights) -> None:
  """Saves a list of arrays as .npz (arr_0, arr_1, ...) via a rename."""
  tmp = f"{path}.tmp.npz"
  np.savez(tmp, *[np.asarray(v) for v in weights])
  os.replace(tmp, path)


def load_weights(path: str) -> list[np.ndarray]:
  """Loads what `save_weights_atomically` wrote, in order."""
  with np.load(path) as archive:
    return [archive[f"arr_{i}"] for i in range(len(archive.files))]


def _to_builtin(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"not JSON serialisable: {type(value)}")
