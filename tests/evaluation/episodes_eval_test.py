"""Tests for fedmeta_tf.evaluation.episodes_eval (the one evaluation loop)."""

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.data import episodes as episodes_lib
from fedmeta_tf.evaluation import backdoor
from fedmeta_tf.evaluation import episodes_eval
from fedmeta_tf.evaluation import meta_test
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import weights as w
from fedmeta_tf.models import conv4
from tests.conftest import tiny_pool
from tests.evaluation import backdoor_test


def test_evaluation_seeds_are_the_experiments_seeds():
  # Experiment 1 on the server's data, Experiments 2-3 on client c.
  assert episodes_eval.evaluation_seed(7) == [7, 0xBD]
  assert episodes_eval.evaluation_seed(7, client=3) == [3007, 0xBD]
  assert episodes_eval.evaluation_seed(
      7, episodes_eval.META_TEST) == [7, 0x7E57]
  assert episodes_eval.client_seed(7, 2) == 2007
  assert episodes_eval.client_seed(7) == 7


@pytest.mark.parametrize("steps, every, at_start, points", [
    (5, 2, True, [0, 2, 4, 5]),
    (4, 2, True, [0, 2, 4]),
    (4, None, True, [0, 4]),
    (4, None, False, [4]),
    (5, 2, False, [2, 4, 5]),
])
def test_schedule_points_and_chunks(steps, every, at_start, points):
  schedule = episodes_eval.Schedule(steps, every=every, at_start=at_start)
  assert schedule.points == points
  chunk_steps = [schedule.chunk] * (schedule.chunks - 1) + [
      schedule.last_chunk]
  assert sum(chunk_steps) == steps
  with pytest.raises(ValueError, match="curve_every"):
    episodes_eval.Schedule(4, every=0)


class _SpyLearner:
  """Fine-tunes nothing; adds up what it is given, to compare episodes."""

  def __init__(self):
    self.images = tf.Variable(0.0, dtype=tf.float64)
    self.seeds = tf.Variable(0, dtype=tf.int64)
    self.steps = tf.Variable(0)

  def start(self, weights, episode, seed):
    del weights
    self.images.assign_add(
        tf.reduce_sum(tf.cast(episode.support_images, tf.float64)))
    self.seeds.assign_add(tf.reduce_sum(seed % 1000003))
    return seed

  def train(self, episode, plan, chunk, first_step, steps):
    del episode, plan, chunk, first_step
    self.steps.assign_add(steps)

  def predictor(self, episode):
    del episode
    return lambda images, training=True: tf.one_hot(
        tf.zeros([tf.shape(images)[0]], tf.int32), 5)

  def restore(self, weights):
    del weights


def _spy_run(seed, episodes=(0, 3), main_only=False):
  _, data = backdoor_test._data()
  config = backdoor.BackdoorEvalConfig(
      episode=meta_test.EvalConfig(steps=5, episodes=3), curve_every=2)
  spy = _SpyLearner()
  tasks = backdoor.backdoor_tasks(config)
  metrics = backdoor.METRICS
  if main_only:
    tasks = lambda data, tasks=tasks: tasks(data)[:1]
    metrics = metrics[:3]
  evaluate = episodes_eval.make_episodes_fn(spy, config.schedule, tasks,
                                            metrics)
  curves = evaluate([], data, seed, episodes)
  return spy, curves, data, config


def test_every_learner_gets_the_same_episodes_and_seeds():
  seed = episodes_eval.evaluation_seed(5, client=1)
  first, curves, data, config = _spy_run(seed)
  second, _, _, _ = _spy_run(seed)
  other, _, _, _ = _spy_run(episodes_eval.evaluation_seed(5, client=2))
  assert first.images.numpy() == second.images.numpy()
  assert first.seeds.numpy() == second.seeds.numpy()
  assert first.images.numpy() != other.images.numpy()
  # 3 episodes x 2 tasks x 5 steps, in chunks 2, 2, 1.
  assert first.steps.numpy() == 30
  assert all(v.shape == (3, 4) for v in curves.values())
  # Chunks of episodes run apart see the episodes of one run.
  part = _SpyLearner()
  for chunk in ((0, 1), (1, 3)):
    spied, _, _, _ = _spy_run(seed, chunk)
    part.images.assign_add(spied.images)
  assert part.images.numpy() == pytest.approx(first.images.numpy(), rel=1e-12)
  # `main_task_episode` is the evaluation's own main-task episode.
  main = sum(float(tf.reduce_sum(tf.cast(
      backdoor.main_task_episode(data, config, seed=5, client=1,
                                 index=i)[0].support_images, tf.float64)))
             for i in range(3))
  main_only, _, _, _ = _spy_run(seed, main_only=True)
  # (rel: images are scaled to [0, 1] eagerly here, in-graph there.)
  assert main == pytest.approx(main_only.images.numpy(), rel=1e-6)
  assert main < first.images.numpy()  # the rest: meta-test episodes


def test_meta_test_is_fine_tuning_then_query_accuracy():
  """make_meta_test_fn equals the loop written out by hand."""
  config = meta_test.EvalConfig(ways=3, shots=2, steps=3, batch=4,
                                episodes=3, learning_rate=0.01)
  pool = tf.constant(tiny_pool(num_classes=6, examples=6, seed=1).images)
  model_fn = lambda: conv4.build_conv4((28, 28, 1), 3, filters=4, seed=0)
  weights = [v.numpy() for v in model_fn().trainable_variables]
  seed = tf.constant(episodes_eval.evaluation_seed(0, episodes_eval.META_TEST),
                     tf.int64)
  model, optimizer = reptile_tf.make_learner(model_fn, config.learning_rate)
  got = meta_test.make_meta_test_fn(model, optimizer, config)(
      weights, pool, seed).numpy()
  expected = []
  for i in range(config.episodes):
    episode_seed = episodes_lib.fold_seed(seed, i)
    episode = episodes_lib.sample_episode(pool, ways=3, shots=2, queries=1,
                                          seed=episode_seed)
    w.assign(model.trainable_variables, weights)
    reptile_tf.reset_optimizer(optimizer)
    reptile_tf.train_steps(
        model, optimizer, episode.support_images, episode.support_labels,
        steps=config.steps, batch_size=config.batch,
        seed=episodes_lib.fold_seed(episode_seed,
                                    episodes_lib.STREAM_MINIBATCH))
    expected.append(float(meta_test.accuracy(model, episode.query_images,
                                             episode.query_labels)))
  np.testing.assert_allclose(got, expected, atol=1e-6)
  model.trainable_variables[0].assign_add(
      tf.ones_like(model.trainable_variables[0]))
  meta_test.make_meta_test_fn(model, optimizer, config)(weights, pool, seed)
  for a, b in zip(model.trainable_variables, weights):  # restored
    np.testing.assert_array_equal(a.numpy(), b)


@pytest.mark.parametrize("every", [1, 2, 5])
def test_a_curve_does_not_depend_on_how_often_it_is_recorded(every):
  """The value at step s is the same for every recording interval that
  records s: the mini-batch of step t depends on (episode seed, t) only."""
  _, ev = backdoor_test._data()
  model_fn = lambda: conv4.build_conv4((28, 28, 1), 5, filters=4, seed=0)
  curves = {}
  for interval in (every, 10):
    config = backdoor.BackdoorEvalConfig(
        episode=meta_test.EvalConfig(steps=10, episodes=2, batch=4,
                                     learning_rate=0.01),
        curve_every=interval)
    evaluator = backdoor.BackdoorEvaluator(model_fn, config=config, data=ev,
                                           seed=3, parallelism=1)
    curves[interval] = (config.curve_steps, evaluator.curves(
        [v.numpy() for v in evaluator.model.trainable_variables]))
  steps, fine = curves[every]
  _, coarse = curves[10]
  for name in backdoor.METRICS:
    assert fine[name][steps.index(10)] == pytest.approx(coarse[name][-1],
                                                        abs=1e-6), name
  assert fine["main_task_accuracy"][0] != fine["main_task_accuracy"][-1] or \
      fine["meta_test_accuracy"][0] != fine["meta_test_accuracy"][-1]
