"""The in-process driver: the same round as the TFF process, without TFF.

TFF's C++ worker does not use a GPU; this driver calls the same client-work
tf.function (`meta/client_work.py`), the same aggregation arithmetic (the
aggregator object's TF form, `aggregation/aggregators.py`) and the same
server update (`meta/server_tf.py`, with the aggregator's `model_step`) in
this Python process, on whatever device TensorFlow picks (main paper,
Algorithm 1). On the same seed both
runtimes give the same global model to float tolerance
(tests/tff_process/process_test.py).

It runs a Reptile client's outer iterations in chunks
(`client_work.make_client_chunk_fn`): after each chunk it advances the
round's progress bar, writes the chunk's mean loss to TensorBoard
(`tensorboard/client_work/`) and saves a client checkpoint
(`client_checkpoints.py`), so a run killed inside a long client update (the
attacker's) resumes inside it, with the result of an uninterrupted run.
The TFF runtime runs a client's work as one call and resumes at round
boundaries only.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.meta import client_work as client_work_lib
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import round_runner
from fedmeta_tf.meta import server_tf
from fedmeta_tf.meta import weights as w
from fedmeta_tf.reporting import progress
from fedmeta_tf.runtime import client_checkpoints
from fedmeta_tf import parallel

# A Reptile client's outer iterations per chunk (`--client_chunk`): on the
# CPU flagfiles' attacker (10 episodes of 20 steps per iteration) a chunk is
# seconds, and a checkpoint of theta and Adam's moments costs milliseconds.
DEFAULT_CHUNK_ITERATIONS = 10


class InProcessRunner(round_runner.RoundRunner):
  """Federated Reptile rounds in this process (CPU or GPU)."""

  def __init__(self, *, model_fn: Callable[[], tf.keras.Model],
               client_work: client_work_lib.ClientWork, inner_lr: float,
               aggregator: aggregators.Aggregator,
               parallel_clients: Optional[int] = None,
               chunk_iterations: int = DEFAULT_CHUNK_ITERATIONS,
               output_dir: Optional[str] = None):
    """Args:
      parallel_clients: clients trained at once, each on its own model
        replica (`fedmeta_tf/parallel.py`; default `parallel.streams()`);
        the round's result does not depend on it.
      chunk_iterations: a Reptile client's outer iterations run per call
        (`client_work.make_client_chunk_fn`); progress is reported, and a
        client checkpoint saved, after each chunk. The result does not
        depend on it.
      output_dir: the run directory: client checkpoints go to
        `checkpoints/client_work/` (`client_checkpoints.py`), the chunks'
        losses to `tensorboard/client_work/`; None: neither is written.
    """
    if chunk_iterations <= 0:
      raise ValueError(f"client chunk iterations must be positive, got "
                       f"{chunk_iterations}")
    self._aggregator = aggregator
    self._client_work = client_work
    self._chunked = isinstance(client_work, client_work_lib.ReptileClientWork)
    self._chunk = chunk_iterations
    self._checkpoints = self._loss_writer = None
    if output_dir and self._chunked:
      self._checkpoints = client_checkpoints.ClientCheckpoints(
          os.path.join(output_dir, "checkpoints", "client_work"))
      self._loss_writer = tf.summary.create_file_writer(
          os.path.join(output_dir, "tensorboard", "client_work"))

    def make_replica():
      model, optimizer = reptile_tf.make_learner(model_fn, inner_lr)
      if self._chunked:
        fn = client_work_lib.make_client_chunk_fn(client_work, model,
                                                  optimizer)
      else:
        fn = client_work_lib.make_client_update_fn(client_work, model,
                                                   optimizer)
      return model, optimizer, fn

    self._replicas = parallel.ReplicaPool(
        make_replica, parallel_clients or parallel.streams())
    self._model = self._replicas.replicas[0][0]
    # theta_G + the aggregate, then the aggregator's step on the new model
    # (identity but for e.g. CRFL), as the TFF process's `server_update`.
    self._server_update = tf.function(
        lambda state, update: server_tf.server_update(
            state, update, model_step=aggregator.model_step))

  def initialize(self):
    return server_tf.initial_server_state(self._model)

  def next(self, state, client_ids):
    round_num = int(state.round_num)
    if self._checkpoints is not None:
      self._checkpoints.discard_before(round_num)
    datas = {c: self._client_work.make_client_data(c) for c in client_ids}
    # Which start weights this round's client checkpoints belong to.
    digest = (w.digest(self.weights(state))
              if self._checkpoints is not None else None)
    total = sum(self._client_work.outer_iterations(d) if self._chunked else 1
                for d in datas.values())
    with progress.bar(total, f"server round {round_num + 1}",
                      "it" if self._chunked else "client") as counter:

      def client_update(replica, client_id):
        if self._chunked:
          return self._chunked_update(replica, client_id, datas[client_id],
                                      state, digest, counter)
        _, _, update_fn = replica
        output = update_fn(state.weights, datas[client_id], state.round_num)
        counter.update(1)
        return [u.numpy() for u in output.update]

      updates = self._replicas.map(client_update, list(client_ids))
    if self._loss_writer is not None:
      self._loss_writer.flush()
    aggregated, metrics = self._aggregator.aggregate(updates, state.weights)
    return self._server_update(state, aggregated), metrics

  def _chunked_update(self, replica, client_id, data, state, digest,
                      counter):
    """One Reptile client's work in chunks of outer iterations, resumed
    from its client checkpoint (of start weights `digest`) when there is
    one."""
    _, optimizer, chunk_fn = replica
    work = self._client_work
    round_num = int(state.round_num)
    total = work.outer_iterations(data)
    saved = (self._checkpoints.load(round_num, client_id, digest, total)
             if self._checkpoints is not None else None)
    if saved is None:
      reptile_tf.reset_optimizer(optimizer)
      theta, loss_sum, done = list(state.weights), tf.constant(0.0), 0
    else:
      for var, value in zip(optimizer.variables, saved.optimizer_variables):
        var.assign(value)
      theta = [tf.constant(v) for v in saved.theta]
      loss_sum, done = tf.constant(saved.loss_sum), saved.iteration
      progress.line(f"resuming client {client_id} of server round "
                    f"{round_num + 1} at outer iteration {done}/{total} "
                    f"({self._checkpoints.path(round_num, client_id)})")
      counter.update(done)
    while done < total:
      start, stop = done, min(done + self._chunk, total)
      before = float(loss_sum)
      theta, loss_sum = chunk_fn(theta, loss_sum, data, state.round_num,
                                 tf.constant(start), tf.constant(stop))
      done = stop
      chunk_loss = (float(loss_sum) - before) / (
          (stop - start) * work.config.meta_batch)
      if self._loss_writer is not None:
        with self._loss_writer.as_default():
          tf.summary.scalar(f"round_{round_num + 1}/client_{client_id}_loss",
                            chunk_loss, step=done)
      if self._checkpoints is not None and done < total:
        self._checkpoints.save(
            round_num, client_id, digest, client_checkpoints.ClientProgress(
                iteration=done, total=total, theta=[v.numpy() for v in theta],
                loss_sum=loss_sum.numpy(),
                optimizer_variables=[v.numpy() for v in optimizer.variables]))
      counter.update(stop - start)
      counter.describe(f"client {client_id} loss {chunk_loss:.3f}")
    output = work.finish(state.weights, theta, loss_sum, data, state.round_num)
    return [u.numpy() for u in output.update]

  def weights(self, state):
    return [np.asarray(v) for v in state.weights]

  def with_weights(self, state, weights):
    return server_tf.ServerState(
        weights=[tf.constant(v, tf.float32) for v in weights],
        round_num=state.round_num)
