"""Checkpoints inside one client's work: resume a killed attacker mid-round.

Round checkpoints (`experiments/checkpoints.py`) resume a run at a round
boundary. The attacker's work alone is one round of hours at the papers'
size (main paper, Section 3.3: E = 50000 episodes of 50 epochs), so the
in-process driver runs a client's outer iterations in chunks and saves,
after each chunk, what the next one starts from: theta_i, the optimizer's
variables (Adam's step counter and moments carry across a client's
episodes), the sum of the episodes' losses and the iteration reached.

A checkpoint belongs to one (server round, client) and to the global
weights the client started from (their digest, `meta.weights.digest`): a
re-run round that starts from other weights ignores it. Files are written via a rename, so a kill at
any point leaves the previous chunk's checkpoint loadable. Checkpoints of
rounds before the one running are deleted when a round starts.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from typing import Optional

import numpy as np

_NAME = "round_{round}_client_{client}.npz"
_PATTERN = re.compile(r"round_(\d+)_client_(\d+)\.npz$")


@dataclasses.dataclass
class ClientProgress:
  """Where a client's work stands after `iteration` of `total` outer
  iterations."""

  iteration: int
  total: int
  theta: list[np.ndarray]
  loss_sum: np.ndarray
  optimizer_variables: list[np.ndarray]


class ClientCheckpoints:
  """`<directory>/round_<r>_client_<c>.npz`, one per client in progress."""

  def __init__(self, directory: str):
    self.directory = directory

  def path(self, round_num: int, client_id: int) -> str:
    return os.path.join(self.directory, _NAME.format(round=int(round_num),
                                                     client=int(client_id)))

  def save(self, round_num: int, client_id: int, start_digest: str,
           progress: ClientProgress) -> None:
    os.makedirs(self.directory, exist_ok=True)
    path = self.path(round_num, client_id)
    arrays = {"digest": np.array(start_digest),
              "iteration": np.int64(progress.iteration),
              "total": np.int64(progress.total),
              "loss_sum": np.asarray(progress.loss_sum, np.float32)}
    arrays.update({f"theta_{i}": np.asarray(v)
                   for i, v in enumerate(progress.theta)})
    arrays.update({f"optimizer_{i}": np.asarray(v)
                   for i, v in enumerate(progress.optimizer_variables)})
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)

  def load(self, round_num: int, client_id: int, start_digest: str,
           total: int) -> Optional[ClientProgress]:
    """The saved progress of this client-round from these start weights
    and with this E, or None."""
    path = self.path(round_num, client_id)
    if not os.path.isfile(path):
      return None
    with np.load(path) as saved:
      if (str(saved["digest"]) != start_digest
          or int(saved["total"]) != int(total)):
        return None

      def arrays(prefix):
        count = sum(1 for k in saved.files if k.startswith(prefix))
        return [saved[f"{prefix}{i}"] for i in range(count)]

      return ClientProgress(
          iteration=int(saved["iteration"]), total=int(saved["total"]),
          theta=arrays("theta_"), loss_sum=saved["loss_sum"],
          optimizer_variables=arrays("optimizer_"))

  def discard_before(self, round_num: int) -> None:
    """Deletes the checkpoints of rounds before `round_num`."""
    for path in glob.glob(os.path.join(self.directory, "round_*_client_*")):
      match = _PATTERN.search(path)
      if match is None or int(match.group(1)) < round_num:
        os.remove(path)
