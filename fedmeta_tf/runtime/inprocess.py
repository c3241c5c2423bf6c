"""The in-process driver: the same round as the TFF process, without TFF.

TFF's C++ worker does not use a GPU; this driver calls the same client-work
tf.function (`meta/client_work.py`), the same aggregation arithmetic (the
aggregator object's TF form, `aggregation/aggregators.py`) and the same
server update (`meta/server_tf.py`) in this Python process, on whatever
device TensorFlow picks (main paper, Algorithm 1). On the same seed both
runtimes give the same global model to float tolerance
(tests/tff_process/process_test.py).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.meta import client_work as client_work_lib
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import round_runner
from fedmeta_tf.meta import server_tf
from fedmeta_tf import parallel


class InProcessRunner(round_runner.RoundRunner):
  """Federated Reptile rounds in this process (CPU or GPU)."""

  def __init__(self, *, model_fn: Callable[[], tf.keras.Model],
               client_work: client_work_lib.ClientWork, inner_lr: float,
               aggregator: aggregators.Aggregator,
               parallel_clients: Optional[int] = None):
    """`parallel_clients`: clients trained at once, each on its own model
    replica (`fedmeta_tf/parallel.py`; default `parallel.streams()`); the
    round's result does not depend on it."""
    self._aggregator = aggregator
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
    def client_update(replica, client_id):
      _, update_fn = replica
      data = self._client_work.make_client_data(client_id)
      output = update_fn(state.weights, data, state.round_num)
      return [u.numpy() for u in output.update]

    updates = self._replicas.map(client_update, list(client_ids))
    aggregated, metrics = self._aggregator.aggregate(updates, state.weights)
    return self._server_update(state, aggregated), metrics

  def weights(self, state):
    return [np.asarray(v) for v in state.weights]

  def with_weights(self, state, weights):
    return server_tf.ServerState(
        weights=[tf.constant(v, tf.float32) for v in weights],
        round_num=state.round_num)
