"""The attacker's sent update, kept by one run and replayed by others.

The attacker does not adapt to the server's aggregator (main paper, Section
2.2: it trains on its poisoned episodes and boosts its update), so the
update it sends from a given global model is the same whatever the server
then does with it. A run of the in-process driver keeps each attacker's sent
update (after boosting, Neurotoxin's mask or DBA's key) in
`checkpoints/attacker_updates/client_<c>_<digest>.npz`, named by the
attacker and the digest of the global weights it started from
(`meta.weights.digest`). A run with `--attacker_update_from=RUN` (which
also takes RUN's pre-trained model) sends that update instead of training
the attacker again: every row of the defense table
(`experiments/defense_table.py`) meets the same attack, and a row costs the
benign rounds only.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from fedmeta_tf.meta import weights as w

SUBDIR = os.path.join("checkpoints", "attacker_updates")


def kept_any(run_dir: str) -> bool:
  """Whether `run_dir` kept at least one attacker update."""
  directory = os.path.join(run_dir, SUBDIR)
  return os.path.isdir(directory) and bool(os.listdir(directory))


class KeptUpdates:
  """Keeps (`replaying` False) or replays (True) the attackers' updates of
  the run directory `run_dir`."""

  def __init__(self, run_dir: str, *, replaying: bool):
    self.run_dir = run_dir
    self.replaying = replaying
    self.directory = os.path.join(run_dir, SUBDIR)

  def path(self, client_id: int, start_weights) -> str:
    return os.path.join(self.directory, f"client_{int(client_id)}_"
                        f"{w.digest(start_weights)[:16]}.npz")

  def keep(self, client_id: int, start_weights, update: Sequence,
           loss) -> None:
    os.makedirs(self.directory, exist_ok=True)
    arrays = {f"update_{i}": np.asarray(u) for i, u in enumerate(update)}
    arrays["loss"] = np.asarray(loss, np.float32)
    path = self.path(client_id, start_weights)
    np.savez(f"{path}.tmp.npz", **arrays)
    os.replace(f"{path}.tmp.npz", path)  # a kill leaves no half file

  def replay(self, client_id: int, start_weights
             ) -> tuple[list[np.ndarray], np.ndarray]:
    """(update, loss) the attacker `client_id` sent from `start_weights`.

    Raises:
      ValueError: `run_dir` kept no such update (another global model, an
        attacker that was not in the round, or a run of the TFF runtime).
    """
    path = self.path(client_id, start_weights)
    if not os.path.isfile(path):
      raise ValueError(
          f"--attacker_update_from={self.run_dir}: no update of attacker "
          f"{client_id} from this global model ({path} is missing); the run "
          "must be an in-process attack run from the same pre-trained model")
    with np.load(path) as saved:
      count = sum(1 for k in saved.files if k.startswith("update_"))
      return [saved[f"update_{i}"] for i in range(count)], saved["loss"]
