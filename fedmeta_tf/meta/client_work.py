"""Client-work strategies: what one client does in one round.

A strategy turns (global weights, the client's data, the round number) into
an update. The federated process (`fedmeta_tf/tff_process`) and the
in-process driver (`fedmeta_tf/runtime`) both call
`make_client_update_fn(strategy, model, optimizer)`, so they run the same
tf.function; the in-process driver runs Reptile strategies
(`ReptileClientWork`) in chunks of outer iterations instead
(`make_client_chunk_fn`), to checkpoint and report progress inside a long
client update, with the same result. Attacks are strategies too (google-research/federated's
`ClientExplicitBoosting` pattern): the server code never branches on who a
client is.

A strategy declares the structure of its per-client data
(`client_data_spec`) and builds it for a client (`make_client_data`); all
clients of one process share one spec.
"""

from __future__ import annotations

import abc
import collections
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from fedmeta_tf.data import episodes as episodes_lib
from fedmeta_tf.meta import reptile_tf

ClientOutput = collections.namedtuple("ClientOutput", ["update", "loss"])


class ClientWork(abc.ABC):
  """One client's work in one round; subclasses implement the algorithm."""

  @abc.abstractmethod
  def client_data_spec(self, image_shape) -> Mapping[str, tf.TensorSpec]:
    """The TensorSpecs of one client's data (shared by all clients)."""

  @abc.abstractmethod
  def make_client_data(self, client_id: int) -> Mapping[str, np.ndarray]:
    """The data client `client_id` brings to a round."""

  @abc.abstractmethod
  def update(self, model, optimizer, weights, client_data,
             round_num) -> ClientOutput:
    """Runs inside a tf.function; returns the client's update and its loss."""


class ReptileClientWork(ClientWork):
  """Algorithm 1's client work, from a per-client `reptile_tf.ReptilePlan`.

  Subclasses say what a client does (`plan`: its episodes, seed, E, e, eta)
  and what it sends (`output`: the update as is, or boosted). The work runs
  in one call (`update`, what the TFF process runs) or in chunks of outer
  iterations (`run_iterations`, then `finish`; the in-process driver, which
  checkpoints between chunks): both give the same update.
  """

  config: reptile_tf.ReptileConfig

  @abc.abstractmethod
  def plan(self, client_data, round_num) -> reptile_tf.ReptilePlan:
    """This client's Reptile work this round."""

  @abc.abstractmethod
  def outer_iterations(self, client_data) -> int:
    """E of this client (a Python int, from its data as `make_client_data`
    returns it)."""

  def output(self, update, loss, client_data) -> ClientOutput:
    """What the client sends, given u_i = theta_i - theta_G."""
    del client_data
    return ClientOutput(update=update, loss=loss)

  def update(self, model, optimizer, weights, client_data, round_num):
    update, loss = reptile_tf.reptile_client_update(
        model, optimizer, weights, plan=self.plan(client_data, round_num),
        config=self.config)
    return self.output(update, loss, client_data)

  def run_iterations(self, model, optimizer, theta, loss_sum, client_data,
                     round_num, start, stop):
    """Outer iterations start..stop-1 (`reptile_tf.reptile_iterations`);
    call `reptile_tf.reset_optimizer(optimizer)` before iteration 0."""
    return reptile_tf.reptile_iterations(
        model, optimizer, theta, loss_sum,
        plan=self.plan(client_data, round_num), config=self.config,
        start=start, stop=stop)

  def finish(self, weights, theta, loss_sum, client_data,
             round_num) -> ClientOutput:
    """The client's output after its last outer iteration."""
    update, loss = reptile_tf.finish_client(
        weights, theta, loss_sum, plan=self.plan(client_data, round_num),
        config=self.config)
    return self.output(update, loss, client_data)


class BenignReptile(ReptileClientWork):
  """Algorithm 1's client work on the client's own meta-training classes.

  Client data: `pool`, uint8 [C_i, S, H, W, ch], and `client_id`. Episodes
  are seeded by (run_seed, round, client_id, episode).
  """

  def __init__(self, *, config: reptile_tf.ReptileConfig, run_seed: int,
               client_pools):
    self.config = config
    self.run_seed = run_seed
    self.client_pools = client_pools

  def client_data_spec(self, image_shape):
    examples = self.client_pools[0].shape[1]
    return collections.OrderedDict(
        pool=tf.TensorSpec([None, examples, *image_shape], tf.uint8),
        client_id=tf.TensorSpec([], tf.int32))

  def make_client_data(self, client_id):
    return collections.OrderedDict(pool=self.client_pools[client_id],
                                   client_id=np.int32(client_id))

  def outer_iterations(self, client_data) -> int:
    del client_data
    return self.config.iterations

  def plan(self, client_data, round_num):
    return reptile_tf.ReptilePlan(
        episode_fn=reptile_tf.pool_episode_fn(client_data["pool"],
                                              self.config),
        seed=episodes_lib.fold_seed(self.run_seed, episodes_lib.STREAM_TRAIN,
                                    round_num, client_data["client_id"]))


def make_client_update_fn(client_work: ClientWork, model: tf.keras.Model,
                          optimizer) -> Any:
  """The tf.function both drivers call: (weights, data, round) -> output.

  `model` and `optimizer` (with its slots built) must already exist: the
  function only assigns to their variables. Clients' data differ in size
  (supervised FedAvg), so the trace generalises to unknown sizes rather than
  retracing per client (`reduce_retracing`).
  """

  @tf.function(reduce_retracing=True)
  def client_update(weights, client_data, round_num):
    return client_work.update(model, optimizer, list(weights), client_data,
                              round_num)

  return client_update


def make_client_chunk_fn(client_work: ReptileClientWork,
                         model: tf.keras.Model, optimizer) -> Any:
  """The tf.function of one chunk of a client's work: (theta, loss_sum,
  data, round, start, stop) -> (theta, loss_sum) after outer iterations
  start..stop-1 (`ReptileClientWork.run_iterations`)."""

  @tf.function
  def client_chunk(theta, loss_sum, client_data, round_num, start, stop):
    return client_work.run_iterations(model, optimizer, list(theta), loss_sum,
                                      client_data, round_num, start, stop)

  return client_chunk
