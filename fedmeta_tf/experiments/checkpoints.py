"""Round checkpoints: save after every round, resume from the latest.

A thin layer over `tff.program.FileProgramStateManager`, which writes each
version as a SavedModel into a temporary directory and renames it, and keeps
a bounded number of versions. Killing a run at any point (SIGKILL included)
leaves the last completed round loadable; re-running the same command
resumes from it and replays the remaining rounds with the same seeds
(episodes and client selection are pure functions of (seed, round, ...)), so
the final model and metrics equal those of an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
from typing import Any, Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedmeta_tf import logs

PREFIX = "round_"


def _to_numpy(structure):
  return tf.nest.map_structure(np.asarray, structure)


class RoundCheckpointer:
  """Saves `{"state": runner state, "extra": dict}` keyed by round number."""

  def __init__(self, checkpoint_dir: str, *, keep: int = 3):
    if keep <= 0:
      raise ValueError(f"checkpoints to keep must be positive, got {keep}")
    self.checkpoint_dir = checkpoint_dir
    # A SIGKILL during a save leaves `<prefix><round>_temp<n>` behind.
    for partial in glob.glob(os.path.join(checkpoint_dir, f"{PREFIX}*_temp*")):
      shutil.rmtree(partial, ignore_errors=True)
    self._manager = tff.program.FileProgramStateManager(
        checkpoint_dir, prefix=PREFIX, keep_total=keep, keep_first=False)

  def save(self, round_num: int, state: Any, extra: dict) -> None:
    value = {"state": _to_numpy(state), "extra": _to_numpy(extra)}
    with logs.quiet():
      asyncio.run(self._manager.save(value, int(round_num)))

  def load_latest(self, state_template: Any,
                  extra_template: dict) -> tuple[Optional[Any], Optional[dict], int]:
    """(state, extra, round) of the latest checkpoint, or (None, None, 0)."""
    template = {"state": _to_numpy(state_template),
                "extra": _to_numpy(extra_template)}
    with logs.quiet():
      value, version = asyncio.run(self._manager.load_latest(template))
    if value is None:
      return None, None, 0
    return value["state"], value["extra"], int(version)
