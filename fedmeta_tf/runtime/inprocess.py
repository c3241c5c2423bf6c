"""The in-process driver: the same round as the TFF process, without TFF.

TFF's C++ worker does not use a GPU; this driver calls the same client-work
tf.function (`meta/client_work.py`) and the same server update
(`meta/server_tf.py`) in this Python process, on whatever device TensorFlow
picks. Aggregation reproduces the secure-sum mean's arithmetic (clipping to
the bound, unweighted mean), so on the same seed both runtimes give the same
global model to float tolerance (tests/runtime/inprocess_test.py).

Both drivers expose the same small interface (`RoundRunner`), used by the
experiment loop: `initialize()`, `next(state, client_ids)`,
`weights(state)`.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from fedmeta_tf.meta import client_work as client_work_lib
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import server_tf
from fedmeta_tf.meta import weights as w
from fedmeta_tf.runtime import parallel
from fedmeta_tf.tff_process import aggregators as aggregators_lib
from fedmeta_tf.tff_process import fault_tolerance


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


class InProcessRunner(RoundRunner):
  """Federated Reptile rounds in this process (CPU or GPU)."""

  def __init__(self, *, model_fn: Callable[[], tf.keras.Model],
               client_work: client_work_lib.ClientWork, inner_lr: float,
               aggregator: str, secure_sum_bound: float,
               max_update_norm: float = (
                   fault_tolerance.DEFAULT_MAX_UPDATE_NORM),
               parallel_clients: Optional[int] = None):
    """`parallel_clients`: clients trained at once, each on its own model
    replica (`runtime/parallel.py`; default `parallel.streams()`); the
    round's result does not depend on it."""
    aggregators_lib.build_aggregator(aggregator,
                                     secure_sum_bound=secure_sum_bound)
    self._max_update_norm = max_update_norm
    name, self._robust_parameter = aggregators_lib.parse_aggregator(aggregator)
    self._secure = name is aggregators_lib.AggregatorName.SECURE_MEAN
    # Robust server defenses: the same pure-TF statistic as their TFF
    # factories (fedmeta_tf/defenses/server/spec.py).
    self._robust = None if name in (
        aggregators_lib.AggregatorName.SECURE_MEAN,
        aggregators_lib.AggregatorName.MEAN) else name.value
    self._bound = secure_sum_bound
    self._client_work = client_work

    def make_replica():
      model, optimizer = reptile_tf.make_learner(model_fn, inner_lr)
      return model, client_work_lib.make_client_update_fn(client_work, model,
                                                          optimizer)

    self._replicas = parallel.ReplicaPool(
        make_replica, parallel_clients or parallel.streams())
    self._model = self._replicas.replicas[0][0]
    self._server_update = tf.function(server_tf.server_update)

  def initialize(self):
    return server_tf.initial_server_state(self._model)

  def next(self, state, client_ids):
    updates = []
    upper_clipped = lower_clipped = excluded = 0

    def client_update(replica, client_id):
      _, update_fn = replica
      data = self._client_work.make_client_data(client_id)
      output = update_fn(state.weights, data, state.round_num)
      return [u.numpy() for u in output.update]

    for update in self._replicas.map(client_update, list(client_ids)):
      if self._secure:
        # As fault_tolerance.FaultTolerantSecureMeanFactory: faulty updates
        # are excluded before the (secure) sum and the mean.
        _, accepted = fault_tolerance.screen_update(update,
                                                    self._max_update_norm)
        if not int(accepted):
          excluded += 1
          continue
        upper, lower = aggregators_lib.count_clipped(update, self._bound)
        upper_clipped += upper
        lower_clipped += lower
        update = aggregators_lib.clip_like_secure_sum(update, self._bound)
      updates.append(update)
    metrics = {}
    if self._robust is not None:
      from fedmeta_tf.defenses.server import spec as robust_spec  # pylint: disable=g-import-not-at-top
      mean_update, metrics = robust_spec.aggregate(
          self._robust, self._robust_parameter, updates)
    elif updates:
      mean_update = w.average(updates)
    else:  # every update was excluded: the round leaves the model unchanged
      mean_update = w.zeros_like(list(state.weights))
    new_state = self._server_update(state, mean_update)
    if self._secure:
      metrics = {"secure_upper_clipped_count": upper_clipped,
                 "secure_lower_clipped_count": lower_clipped,
                 "accepted_updates": len(updates),
                 "excluded_updates": excluded}
    return new_state, metrics

  def weights(self, state):
    return [np.asarray(v) for v in state.weights]

  def with_weights(self, state, weights):
    return server_tf.ServerState(
        weights=[tf.constant(v, tf.float32) for v in weights],
        round_num=state.round_num)
