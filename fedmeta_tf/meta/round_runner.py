"""`RoundRunner`: the interface of a driver of federated Reptile rounds.

Two drivers implement it: the TFF iterative process
(`tff_process/runner.py`) and the in-process driver (`runtime/inprocess.py`).
Both run the same round (main paper, Algorithm 1: broadcast theta_G, client
updates, aggregation, server step); the experiment loops see only this
interface (built by `experiments/runners.py`), and neither driver imports
the other.
"""

from __future__ import annotations

import abc
from typing import Any, Sequence

import numpy as np


class RoundRunner(abc.ABC):
  """Runs federated rounds; states are opaque to callers."""

  @abc.abstractmethod
  def initialize(self) -> Any:
    ...

  @abc.abstractmethod
  def next(self, state, client_ids: Sequence[int]) -> tuple[Any, dict]:
    """One round with the updates of `client_ids`; returns (state, metrics)."""

  @abc.abstractmethod
  def weights(self, state) -> list[np.ndarray]:
    ...

  @abc.abstractmethod
  def with_weights(self, state, weights) -> Any:
    """`state` with the global model replaced by `weights` (for resuming and
    for starting experiments from a saved model)."""
