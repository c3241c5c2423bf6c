"""A client's work in chunks: the one-call update, resumable mid-client.

The in-process driver runs a Reptile client's outer iterations in chunks
(`runtime/inprocess.py`), checkpointing between them
(`runtime/client_checkpoints.py`). The chunking must not change the update,
and a client killed after some chunks must resume from its checkpoint to
the update of an uninterrupted run.
"""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.attacks import backdoor_reptile as br
from fedmeta_tf.meta import client_work
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import weights
from fedmeta_tf.models import conv4
from fedmeta_tf.runtime import client_checkpoints
from fedmeta_tf.runtime import inprocess
from tests.conftest import tiny_pool

ATTACKER_ITERATIONS = 5


def _work():
  pools = [tiny_pool(num_classes=6, examples=12, seed=s).images
           for s in range(3)]
  config = reptile_tf.ReptileConfig(ways=3, shots=2, iterations=3,
                                    meta_batch=2, inner_steps=2, inner_batch=4)
  return br.BackdoorReptile(
      config=config, run_seed=0, client_pools=pools,
      attacker=br.AttackerConfig(iterations=ATTACKER_ITERATIONS,
                                 inner_steps=3, boosting_factor=3.0,
                                 keyed_last_steps=1),
      attacker_ids=[0], target_images=np.full([4, 28, 28, 1], 7, np.uint8),
      backdoor_images=np.full([4, 28, 28, 1], 250, np.uint8))


def _model_fn():
  return conv4.build_conv4((28, 28, 1), 3, filters=4, seed=0)


def _runner(chunk, output_dir=None):
  return inprocess.InProcessRunner(
      model_fn=_model_fn, client_work=_work(), inner_lr=0.001,
      aggregator=aggregators.parse_aggregator("mean"), parallel_clients=1,
      chunk_iterations=chunk, output_dir=output_dir)


def _round(runner, clients=(0, 1)):
  state, _ = runner.next(runner.initialize(), list(clients))
  return runner.weights(state)


def _assert_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)


def test_chunks_give_the_one_call_update():
  work = _work()
  model = _model_fn()
  optimizer = reptile_tf.make_inner_optimizer(0.001)
  reptile_tf.build_optimizer(optimizer, model)
  weights = [tf.identity(v) for v in model.trainable_variables]
  one_call = client_work.make_client_update_fn(work, model, optimizer)
  data = work.make_client_data(0)
  expected = one_call(weights, data, tf.constant(0, tf.int64)).update
  # One client per round: the mean of one update is the update.
  whole = _round(_runner(chunk=100), clients=[0])
  np.testing.assert_allclose(
      np.concatenate([v.ravel() for v in whole]),
      np.concatenate([(w + u).numpy().ravel()
                      for w, u in zip(weights, expected)]),
      rtol=1e-6, atol=1e-7)
  for chunk in (1, 2):
    _assert_equal(_round(_runner(chunk=chunk), clients=[0]), whole)


class _Killed(Exception):
  pass


def test_a_killed_client_resumes_from_its_last_chunk(tmp_path):
  uninterrupted = _round(_runner(chunk=1, output_dir=str(tmp_path / "a")))

  killed = _runner(chunk=1, output_dir=str(tmp_path / "b"))
  model, optimizer, chunk_fn = killed._replicas.replicas[0]  # pylint: disable=protected-access
  calls = []

  def dies_after_three_chunks(*args):
    if len(calls) == 3:
      raise _Killed()
    calls.append(args)
    return chunk_fn(*args)

  killed._replicas.replicas[0] = (model, optimizer, dies_after_three_chunks)  # pylint: disable=protected-access
  with pytest.raises(_Killed):
    _round(killed)
  saved = tmp_path / "b" / "checkpoints" / "client_work" / "round_0_client_0.npz"
  assert saved.exists()

  resumed = _runner(chunk=1, output_dir=str(tmp_path / "b"))
  resumed_chunks = []
  model, optimizer, fn = resumed._replicas.replicas[0]  # pylint: disable=protected-access

  def counting(*args):
    resumed_chunks.append(int(args[4]))
    return fn(*args)

  resumed._replicas.replicas[0] = (model, optimizer, counting)  # pylint: disable=protected-access
  _assert_equal(_round(resumed), uninterrupted)
  # The attacker (client 0) went on from iteration 3; client 1 (E = 3)
  # started from 0.
  assert resumed_chunks == [3, 4, 0, 1, 2]
  # The chunks' losses are in TensorBoard.
  assert glob.glob(str(tmp_path / "a" / "tensorboard" / "client_work" / "*"))


def test_a_checkpoint_from_other_start_weights_is_ignored(tmp_path):
  store = client_checkpoints.ClientCheckpoints(str(tmp_path))
  progress = client_checkpoints.ClientProgress(
      iteration=2, total=5, theta=[np.ones(3, np.float32)],
      loss_sum=np.float32(1.5), optimizer_variables=[np.zeros(2, np.float32)])
  digest = weights.digest([np.zeros(3, np.float32)])
  store.save(4, 0, digest, progress)
  loaded = store.load(4, 0, digest, total=5)
  assert loaded.iteration == 2 and float(loaded.loss_sum) == 1.5
  np.testing.assert_array_equal(loaded.theta[0], progress.theta[0])
  other = weights.digest([np.ones(3, np.float32)])
  assert store.load(4, 0, other, total=5) is None
  assert store.load(4, 0, digest, total=6) is None
  assert store.load(4, 1, digest, total=5) is None
  store.discard_before(5)
  assert not os.listdir(tmp_path)


def test_the_client_chunk_flag_reaches_the_driver(tmp_path, monkeypatch):
  """train_fedmeta --client_chunk=k: the driver calls a client's work in
  chunks of k outer iterations (E = 6 here: 3 calls of 2 per client)."""
  # pylint: disable=g-import-not-at-top
  from absl.testing import flagsaver
  from binaries import train_fedmeta
  from tests.binaries.train_fedmeta_test import tiny_flags
  from tests.conftest import tiny_archive
  # pylint: enable=g-import-not-at-top
  chunks = []
  make_chunk_fn = client_work.make_client_chunk_fn

  def spied(*args):
    fn = make_chunk_fn(*args)

    def chunk(*call):
      chunks.append((int(call[4]), int(call[5])))
      return fn(*call)
    return chunk

  monkeypatch.setattr(client_work, "make_client_chunk_fn", spied)
  archive = tiny_archive(tmp_path)
  with flagsaver.flagsaver(**tiny_flags(archive, tmp_path / "runs",
                                        runtime="inprocess", rounds=1,
                                        episodes_per_round=6, client_chunk=2,
                                        progress="none")):
    train_fedmeta.main(["train_fedmeta"])
  # Round 1: 2 clients report (M_min = 2 of 3 sampled), 3 chunks each.
  assert sorted(set(chunks)) == [(0, 2), (2, 4), (4, 6)]
  assert len(chunks) % 3 == 0 and len(chunks) >= 6
