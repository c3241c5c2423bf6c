"""Completed units of work on disk, so killed experiments resume (issue #7).

Experiments 2 and 3 (`finetune.py`, `experiments/defend.py`) are a
loop over independent units — (case, client) curves, (delta, client) start
models — each minutes long. `WorkUnits` keeps every finished unit's arrays
in `<dir>/<fingerprint>/<unit>.npz`, written atomically
(`release.save_weights_atomically`), so that re-running the same command
after a kill (SIGKILL included) recomputes only the units that had not
finished, and a finished experiment re-run does no training at all.

The fingerprint is a hash of the experiment's configuration: units of an
experiment with other settings live in another folder and are never mixed
in. `clear()` (the binaries' `--overwrite`) deletes them all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from typing import Callable, Mapping

import numpy as np

from fedmeta_tf.reporting import release

_UNIT_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


# Settings added to the experiments' configs after run directories of them
# existed, with their defaults: `settings_key` leaves them out at the default,
# so units written before they existed are still found.
LATER_SETTINGS = {"precision": "float32"}


def settings_key(config: Mapping) -> dict:
  """`config` without the `LATER_SETTINGS` that are at their default."""
  return {k: v for k, v in config.items()
          if k not in LATER_SETTINGS or v != LATER_SETTINGS[k]}


def fingerprint(config: Mapping) -> str:
  """A short stable hash of a JSON-able configuration."""
  text = json.dumps(config, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


class WorkUnits:
  """Arrays of completed units of one experiment configuration."""

  def __init__(self, root: str, config: Mapping):
    self.root = root
    self.directory = os.path.join(root, fingerprint(config))

  def _path(self, unit: str) -> str:
    if not _UNIT_NAME.match(unit):
      raise ValueError(f"unit name {unit!r} must match {_UNIT_NAME.pattern}")
    return os.path.join(self.directory, f"{unit}.npz")

  def done(self, unit: str) -> bool:
    return os.path.isfile(self._path(unit))

  def get_or_compute(self, unit: str, compute: Callable[[], Mapping[str, np.ndarray]]
                     ) -> dict[str, np.ndarray]:
    """The stored arrays of `unit`, or `compute()`'s, stored first.

    `compute` returns a flat mapping of names to arrays; names keep their
    order.
    """
    path = self._path(unit)
    if os.path.isfile(path):
      with np.load(path) as f:
        names = [str(n) for n in f["names"]]
        return {n: f[f"arr_{i}"] for i, n in enumerate(names)}
    values = {k: np.asarray(v) for k, v in compute().items()}
    os.makedirs(self.directory, exist_ok=True)
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, *values.values(), names=np.asarray(list(values)))
    os.replace(tmp, path)
    return values

  def get_or_compute_weights(self, unit: str,
                             compute: Callable[[], list[np.ndarray]]
                             ) -> list[np.ndarray]:
    """Like `get_or_compute`, for a list of weight arrays."""
    path = self._path(unit)
    if os.path.isfile(path):
      return release.load_weights(path)
    weights = [np.asarray(v) for v in compute()]
    os.makedirs(self.directory, exist_ok=True)
    release.save_weights_atomically(path, weights)
    return weights

  def clear(self) -> None:
    """Deletes the units of every configuration under `root`."""
    shutil.rmtree(self.root, ignore_errors=True)
