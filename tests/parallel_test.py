"""Tests for fedmeta_tf.parallel: running clients and evaluation
episodes side by side changes speed, not results."""

import threading

import numpy as np
import pytest

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.evaluation import backdoor
from fedmeta_tf.evaluation import meta_test
from fedmeta_tf.models import conv4
from fedmeta_tf.runtime import inprocess
from fedmeta_tf import parallel
from tests.evaluation import backdoor_test
from tests.tff_process import process_test


@pytest.mark.parametrize("count,parts", [(20, 3), (5, 8), (1, 2), (7, 1)])
def test_split_range_covers_the_range_in_order(count, parts):
  chunks = parallel.split_range(count, parts)
  assert len(chunks) == min(count, parts)
  assert [i for start, stop in chunks for i in range(start, stop)] == list(
      range(count))
  sizes = [stop - start for start, stop in chunks]
  assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_replica_pool_keeps_item_order_and_lends_each_replica_once():
  in_use, lock = set(), threading.Lock()
  overlap = []

  def work(replica, item):
    with lock:
      overlap.append(replica in in_use)
      in_use.add(replica)
    threading.Event().wait(0.01)
    with lock:
      in_use.discard(replica)
    return item * 10 + replica

  counter = iter(range(3))
  pool = parallel.ReplicaPool(lambda: next(counter), 3)
  results = pool.map(work, list(range(9)))
  assert [r // 10 for r in results] == list(range(9))
  assert not any(overlap)  # no replica served two items at once
  assert len({r % 10 for r in results}) > 1  # the work was spread


def test_replica_pool_raises_the_failing_items_error():
  def work(replica, item):
    if item in (3, 5):
      raise ValueError(f"item {item}")
    return item

  pool = parallel.ReplicaPool(lambda: None, 2)
  with pytest.raises(ValueError, match="item [35]"):
    pool.map(work, list(range(8)))
  assert pool.map(work, [0, 1, 2]) == [0, 1, 2]  # still usable


def test_map_chunks_splits_the_range_into_one_chunk_per_replica():
  pool = parallel.ReplicaPool(lambda: None, 3)
  parts = pool.map_chunks(lambda replica, chunk: chunk, 10)
  assert parts == [(0, 3), (3, 6), (6, 10)]  # in order, ready to concatenate
  # Fewer items than replicas: no empty chunks.
  assert pool.map_chunks(lambda replica, chunk: chunk, 2) == [(0, 1), (1, 2)]


def test_replica_pool_rejects_zero():
  with pytest.raises(ValueError, match="parallelism must be positive"):
    parallel.ReplicaPool(lambda: None, 0)


def test_configure_rejects_negative_values():
  with pytest.raises(ValueError, match="--parallelism must be >= 0"):
    parallel.configure(-1, 3)


def _rounds(parallel_clients):
  runner = inprocess.InProcessRunner(
      model_fn=process_test._model_fn, client_work=process_test._client_work(),
      inner_lr=process_test.CONFIG.inner_lr,
      aggregator=aggregators.SecureMean(secure_sum_bound=1.0),
      parallel_clients=parallel_clients)
  state = runner.initialize()
  for clients in ([0, 1, 2], [3, 1]):
    state, metrics = runner.next(state, clients)
  return runner.weights(state), metrics


def test_parallel_clients_give_the_sequential_global_model():
  sequential, seq_metrics = _rounds(1)
  side_by_side, par_metrics = _rounds(3)
  initial = [v.numpy() for v in process_test._model_fn().trainable_variables]
  assert max(np.max(np.abs(a - b)) for a, b in zip(sequential, initial)) > 1e-3
  for a, b in zip(sequential, side_by_side):
    np.testing.assert_allclose(a, b, atol=1e-6)
  assert seq_metrics == par_metrics


def test_parallel_evaluation_gives_the_sequential_curves():
  _, data = backdoor_test._data()
  config = backdoor.BackdoorEvalConfig(
      episode=meta_test.EvalConfig(steps=4, episodes=7), curve_every=2)
  model_fn = lambda: conv4.build_conv4((28, 28, 1), 5, filters=4, seed=0)
  curves = {}
  for parallelism in (1, 3):
    evaluator = backdoor.BackdoorEvaluator(model_fn, config=config, data=data,
                                           seed=0, parallelism=parallelism)
    weights = [v.numpy() for v in model_fn().trainable_variables]
    curves[parallelism] = evaluator.curves(weights)
  for name in backdoor.METRICS:
    np.testing.assert_allclose(curves[1][name], curves[3][name], atol=1e-6)
  assert curves[1]["main_task_accuracy"][-1] > 0


def test_parallel_defense_evaluation_gives_the_sequential_curves():
  from fedmeta_tf.evaluation import defended as defense_eval  # pylint: disable=g-import-not-at-top
  from fedmeta_tf.defenses.local import secure_fine_tuning as sft  # pylint: disable=g-import-not-at-top
  _, data = backdoor_test._data()
  config = backdoor.BackdoorEvalConfig(
      episode=meta_test.EvalConfig(steps=4, episodes=5), curve_every=2)
  defense = sft.DefenseConfig(steps=4, head_only_steps=1, batch=5,
                              learning_rate=0.01)
  curves = {}
  for parallelism in (1, 2):
    evaluator = defense_eval.DefenseEvaluator(
        image_shape=(28, 28, 1), config=config, defense=defense, filters=4,
        parallelism=parallelism)
    features = [v.numpy() for v in evaluator.learner.feature_variables]
    curves[parallelism] = evaluator.curves(features, data=data, seed=3)
  for name in backdoor.METRICS:
    assert curves[1][name].shape == (3,)
    np.testing.assert_allclose(curves[1][name], curves[2][name], atol=1e-6)
  assert curves[1]["main_task_accuracy"][-1] > 0


def test_parallel_meta_test_gives_the_sequential_accuracy(monkeypatch):
  from fedmeta_tf.experiments import training  # pylint: disable=g-import-not-at-top
  from tests.conftest import tiny_pool  # pylint: disable=g-import-not-at-top
  config = training.TrainingConfig(evaluation=meta_test.EvalConfig(
      ways=3, shots=2, steps=3, episodes=5))
  pool = tiny_pool(num_classes=6, examples=6, seed=1).images
  model_fn = lambda: conv4.build_conv4((28, 28, 1), 3, filters=4, seed=0)
  weights = [v.numpy() for v in model_fn().trainable_variables]
  accuracies = {}
  for streams in (1, 2):
    monkeypatch.setattr(parallel, "_streams", streams)
    accuracies[streams] = training.MetaTester(model_fn, config, pool)(weights,
                                                                      0)
  assert accuracies[1] == pytest.approx(accuracies[2], abs=1e-6)
  assert 0 < accuracies[1] <= 1
