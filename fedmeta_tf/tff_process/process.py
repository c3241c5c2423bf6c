"""Federated Reptile as a TFF iterative process (only federated wiring here).

    initialize() -> server state {model: (weights, round_num), aggregator}
    next(state, client_data@CLIENTS) -> (state, measurements)

One round of `next` (main paper, Algorithm 1):
  1. broadcast (theta_G, round) to the participating clients;
  2. each runs its client-work strategy (`fedmeta_tf/meta/client_work.py`),
     in a tf.function, and returns u_i;
  3. the aggregation process (in the papers a secure-sum mean, see
     `aggregation/aggregators.py`) delivers mean(u_i) to the server, which
     sees nothing else;
  4. the server adds it: theta_G + sum_i u_i / M_min (`meta/server_tf.py`),
     then applies the aggregator's `model_step` to the new theta_G (identity
     but for e.g. CRFL's clip-and-noise), in the same SERVER-placed
     computation: the round holds no aggregation beyond the factory's.

The process takes the data of the clients that report in the round; which
clients those are (M_r sampled, first M_min arrivals) is decided by the
caller with `server_tf.select_clients`, as in TFF's own simulations.
"""

from __future__ import annotations

import collections
from typing import Callable, Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedmeta_tf.meta import client_work as client_work_lib
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import server_tf

ModelFn = Callable[[], tf.keras.Model]


def weights_type(model_fn: ModelFn) -> tff.StructWithPythonType:
  model = model_fn()
  return tff.StructWithPythonType(
      [tff.TensorType(np.float32, v.shape) for v in model.trainable_variables],
      list)


def build_fedmeta_process(
    *, model_fn: ModelFn, client_work: client_work_lib.ClientWork,
    aggregation_factory: tff.aggregators.UnweightedAggregationFactory,
    inner_lr: float, image_shape, model_step: Optional[Callable] = None
) -> tff.templates.IterativeProcess:
  """Builds the round computation of federated Reptile.

  Args:
    model_fn: builds a fresh Keras model (called inside TFF computations).
    client_work: the strategy clients run (benign Reptile, or an attack).
    aggregation_factory: how updates are aggregated (an aggregator object's
      `tff_factory()`, `aggregation/aggregators.py`).
    inner_lr: the clients' Adam learning rate.
    image_shape: (H, W, ch) of the client data.
    model_step: the aggregator's step on the new global model
      (`Aggregator.model_step(weights, round_num)`, TF ops), run inside the
      server update; None: the model is theta_G + the aggregate.
  """
  # Long: the TFF computations below are one closure: each is typed by the
  # one before (server_init -> model_state_type -> initialize -> state_type
  # -> next_fn), and next_fn calls the others; split apart they would have to
  # pass all of those types and computations around.
  model_weights_type = weights_type(model_fn)
  data_spec = client_work.client_data_spec(image_shape)
  client_data_type = tff.to_type(collections.OrderedDict(
      (k, tff.TensorType(s.dtype.as_numpy_dtype, s.shape))
      for k, s in data_spec.items()))
  aggregation_process = aggregation_factory.create(model_weights_type)

  @tff.tensorflow.computation
  def server_init():
    state = server_tf.initial_server_state(model_fn())
    return collections.OrderedDict(weights=state.weights,
                                   round_num=state.round_num)

  model_state_type = server_init.type_signature.result

  @tff.federated_computation
  def initialize():
    return tff.federated_zip(collections.OrderedDict(
        model=tff.federated_eval(server_init, tff.SERVER),
        aggregator=aggregation_process.initialize()))

  @tff.tensorflow.computation(model_state_type, client_data_type)
  def client_update(model_state, client_data):
    # Variables are created here, outside the tf.function that trains them.
    model, optimizer = reptile_tf.make_learner(model_fn, inner_lr)
    update_fn = client_work_lib.make_client_update_fn(client_work, model,
                                                      optimizer)
    output = update_fn(model_state["weights"], client_data,
                       model_state["round_num"])
    return collections.OrderedDict(update=output.update, loss=output.loss)

  @tff.tensorflow.computation(model_state_type, model_weights_type)
  def server_update(model_state, mean_update):
    state = server_tf.server_update(
        server_tf.ServerState(weights=model_state["weights"],
                              round_num=model_state["round_num"]),
        mean_update, model_step=model_step)
    return collections.OrderedDict(weights=state.weights,
                                   round_num=state.round_num)

  state_type = initialize.type_signature.result

  @tff.federated_computation(state_type,
                             tff.FederatedType(client_data_type, tff.CLIENTS))
  def next_fn(state, client_data):
    model_state = tff.federated_broadcast(state.model)
    outputs = tff.federated_map(client_update, (model_state, client_data))
    aggregated = aggregation_process.next(state.aggregator, outputs.update)
    new_model = tff.federated_map(server_update,
                                  (state.model, aggregated.result))
    new_state = tff.federated_zip(collections.OrderedDict(
        model=new_model, aggregator=aggregated.state))
    return new_state, aggregated.measurements

  return tff.templates.IterativeProcess(initialize, next_fn)


def get_weights(state) -> list[np.ndarray]:
  """The global model's weights from a server state returned by the process."""
  return [np.asarray(v) for v in state["model"]["weights"]]


def get_round(state) -> int:
  return int(state["model"]["round_num"])
