"""The interface every aggregator implements (`aggregators.py` lists them).

An aggregator is what the server does with one round's client updates before
it adds the result to the global model (main paper, Algorithm 1), in the two
forms the two drivers need: `aggregate` (in-process) and `tff_factory` (TFF).
An aggregator may also act on the new global model (`model_step`, e.g.
CRFL's clip-and-noise, Xie et al. ICML 2021, Algorithm 1): both drivers
apply it right after the server update, at the server, outside the
aggregation (identity by default).
Its own module so that every family of aggregators (`aggregators.py`,
`secure_defenses.py`, `plaintext_defenses.py`) subclasses it without
importing the registry.
"""

from __future__ import annotations

import abc
from typing import ClassVar, Optional, Sequence

import numpy as np
import tensorflow as tf

Update = Sequence[np.ndarray]  # one client's update, per weight tensor


class Aggregator(abc.ABC):
  """How the server combines one round's client updates.

  Attributes:
    name: the flag's name (`--aggregator=name[:parameters]`).
    parameter: the field a bare `name:value` sets; None: it takes none.
    keys: the fields `name:key=value,...` may set (empty: just `parameter`;
      see `settable_keys`).
    keeps_secure_aggregation: whether the TFF round holds only secure
      aggregation (the server sees the sum of the updates, no single one).
  """

  name: ClassVar[str]
  parameter: ClassVar[Optional[str]] = None
  keys: ClassVar[tuple] = ()
  keeps_secure_aggregation: ClassVar[bool] = False

  @abc.abstractmethod
  def aggregate(self, updates: Sequence[Update], weights
                ) -> tuple[list[tf.Tensor], dict]:
    """In-process: (aggregated update, metrics) of `updates`, one per client
    that reported; `weights` (the global model) shapes a zero update."""

  @abc.abstractmethod
  def tff_factory(self):
    """The `tff.aggregators.UnweightedAggregationFactory` of this aggregator
    (computes what `aggregate` does)."""

  def model_step(self, weights: Sequence[tf.Tensor], round_num: tf.Tensor
                 ) -> list[tf.Tensor]:
    """The server's step on the new global model theta_G (after theta_G +
    the aggregated update), in TF ops only: it is traced in the in-process
    driver's `tf.function` and inside the TFF process's SERVER-placed
    `server_update` computation (`meta/server_tf.server_update`), so it
    adds no aggregation to the round. `round_num` is the round counter
    after the update (int64: 1 after the first round), the same in both
    drivers and saved in the round checkpoints: a seed for any noise.

    Default: the identity (the model is the server update's)."""
    del round_num
    return list(weights)
