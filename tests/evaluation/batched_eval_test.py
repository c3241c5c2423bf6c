"""The batched evaluation equals the one-at-a-time loop, episode by episode."""

import contextlib

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.data import episodes as episodes_lib
from fedmeta_tf.defenses.local import secure_fine_tuning
from fedmeta_tf.evaluation import backdoor
from fedmeta_tf.evaluation import batched_eval
from fedmeta_tf.evaluation import defended
from fedmeta_tf.evaluation import episodes_eval
from fedmeta_tf.evaluation import meta_test
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.models import conv4
from fedmeta_tf.models import precision
from fedmeta_tf.models import stacked_conv4
from fedmeta_tf import parallel
from tests.conftest import tiny_pool
from tests.evaluation import backdoor_test

WAYS, SHOTS, QUERIES = 3, 2, 2


@contextlib.contextmanager
def _formulation(choice):
  batched_eval.configure(choice)
  try:
    yield
  finally:
    batched_eval.configure(batched_eval.SEQUENTIAL)


def _logit_tasks(data):
  """A task scored by the mean query logits (continuous: a mixed-up episode
  or step shows where an accuracy might not)."""

  def sample(seed):
    return episodes_lib.sample_episode(data["pool"], ways=WAYS, shots=SHOTS,
                                       queries=QUERIES, seed=seed), None

  def score(model, episode, context):
    del context
    return tf.reduce_mean(model(episode.query_images, training=True), 0)

  return [episodes_eval.Task((5,), sample, score)]


def _dense_learner(precision_name):
  with precision.policy(precision_name):
    model = conv4.build_conv4((28, 28, 1), WAYS, filters=8, seed=3)
  optimizer = reptile_tf.make_inner_optimizer(0.001)  # eta (Section 3.3)
  reptile_tf.build_optimizer(optimizer, model)
  return (episodes_eval.DenseLearner(model, optimizer, batch=4, steps=5),
          [v.numpy() for v in model.trainable_variables])


def _head_learner(head, precision_name="float32"):
  """Algorithm 2's learner: 2 head-only iterations of 5, leave-one-out."""
  with precision.policy(precision_name):
    learner = secure_fine_tuning.MetricHeadLearner(
        image_shape=(28, 28, 1), ways=WAYS, filters=8,
        config=secure_fine_tuning.DefenseConfig(
            head=head, steps=5, head_only_steps=2, batch=4,
            learning_rate=0.01))
  weights = [v.numpy() + 0.01 for v in learner.feature_variables]
  return defended.MetricHeadEvalLearner(learner), weights


def _curves(choice, precision_name, episodes=(0, 7), head=None):
  """{metric: [episodes, points]} of a fine-tuning curve with `choice`: the
  dense learner, or the metric `head`'s."""
  learner, weights = (_dense_learner(precision_name) if head is None
                      else _head_learner(head, precision_name))
  with _formulation(choice):
    evaluate = episodes_eval.make_episodes_fn(
        learner, episodes_eval.Schedule(5, every=2), _logit_tasks,
        metrics=[f"logit_{n}" for n in range(WAYS)])
    data = {"pool": tf.constant(tiny_pool(num_classes=6, examples=6).images)}
    return evaluate(weights, data, tf.constant([1, 2], tf.int64), episodes)


@pytest.mark.parametrize("choice", ["grouped", "loop", "patches"])
def test_stacked_curves_equal_the_sequential_loop(choice, monkeypatch):
  # 7 episodes in stacks of at most 3: a full and a partial stack.
  monkeypatch.setattr(batched_eval, "MAX_STACK", 3)
  expected = _curves("sequential", "float32")
  ours = _curves(choice, "float32")
  first = expected["logit_0"]
  assert first.shape == (7, 4)  # steps 0, 2, 4, 5
  assert np.abs(first[:, -1] - first[:, 0]).min() > 1e-3  # it fine-tunes
  assert np.abs(first[1:, -1] - first[:-1, -1]).min() > 1e-4  # episodes differ
  for name in expected:
    np.testing.assert_allclose(ours[name], expected[name], atol=2e-4)
  part = _curves(choice, "float32", episodes=(2, 5))
  np.testing.assert_allclose(part["logit_1"], ours["logit_1"][2:5], atol=1e-5)


@pytest.mark.parametrize("head,choice", [("matching", "grouped"),
                                         ("protonet", "loop"),
                                         ("matching", "patches")])
def test_stacked_metric_heads_equal_the_sequential_loop(head, choice,
                                                       monkeypatch):
  # Scored at steps 0, 2, 4, 5: the joint phase (and Adam's reset) starts
  # at step 2, inside the second chunk's first step.
  monkeypatch.setattr(batched_eval, "MAX_STACK", 3)
  expected = _curves("sequential", "float32", head=head)
  ours = _curves(choice, "float32", head=head)
  first = expected["logit_0"]
  assert first.shape == (7, 4)
  assert np.abs(first[:, -1] - first[:, 2]).min() > 1e-4  # joint phase moves
  assert np.abs(first[1:, -1] - first[:-1, -1]).min() > 1e-4
  for name in expected:  # log-probabilities down to about -10: rtol too
    np.testing.assert_allclose(ours[name], expected[name], rtol=1e-4,
                               atol=2e-4)


@pytest.mark.parametrize("choice", ["grouped", "patches"])
def test_bfloat16_stacks_compute_as_the_keras_model_under_mixed_bfloat16(
    choice):
  expected = _curves("sequential", "mixed_bfloat16")
  ours = _curves(choice, "mixed_bfloat16")
  in_float32 = _curves(choice, "float32")
  for name in expected:
    # bfloat16 keeps 8 bits of mantissa: both round alike, float32 does not.
    np.testing.assert_allclose(ours[name], expected[name], atol=0.05)
  gap = max(np.abs(ours[n] - in_float32[n]).max() for n in ours)
  assert gap > 1e-3


def test_backdoor_evaluation_is_the_same_batched():
  _, data = backdoor_test._data()  # pylint: disable=protected-access
  config = backdoor.BackdoorEvalConfig(
      episode=meta_test.EvalConfig(steps=4, episodes=6), curve_every=2)

  def curves(choice):
    with _formulation(choice):
      evaluator = backdoor.BackdoorEvaluator(
          lambda: conv4.build_conv4((28, 28, 1), 5, filters=4, seed=0),
          config=config, data=data, seed=0, parallelism=2)
      return evaluator.curves(
          [v.numpy() for v in evaluator.model.trainable_variables])

  expected, ours = curves("sequential"), curves("grouped")
  assert set(ours) == set(backdoor.METRICS)
  for name in expected:  # accuracies over 6 episodes: equal, not close
    np.testing.assert_allclose(ours[name], expected[name], atol=1e-6)


def test_configure_names_the_flag_and_its_choices():
  with pytest.raises(ValueError, match="--eval_formulation.*grouped"):
    batched_eval.configure("winograd")
  assert batched_eval.configure("auto") is batched_eval.auto_formulation()
  assert batched_eval.auto_formulation() is (
      stacked_conv4.Formulation.GROUPED if parallel.gpu_visible() else None)
  assert batched_eval.configure("sequential") is None
  assert batched_eval.chunks_per_replica(40, 2, 4) == 4  # sequential
  with _formulation("grouped"):
    assert batched_eval.chunks_per_replica(40, 2, 4) == 2  # stacks of 10
    assert batched_eval.chunks_per_replica(5, 2, 4) == 1
