"""Tests for fedmeta_tf.defenses.local.secure_fine_tuning (Algorithm 2)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.data import episodes
from fedmeta_tf.defenses.local import glorot_mix
from fedmeta_tf.defenses.local import secure_fine_tuning as sft
from tests.conftest import tiny_pool


def _episode(seed=1, shots=3, queries=2):
  pool = tf.constant(tiny_pool(num_classes=8, examples=6).images)
  return episodes.sample_episode(pool, ways=5, shots=shots, queries=queries,
                                 seed=tf.constant([seed, 0], tf.int64))


def _learner(**kwargs):
  config = sft.DefenseConfig(**{"steps": 6, "head_only_steps": 3, "batch": 5,
                                "learning_rate": 0.01, **kwargs})
  return sft.MetricHeadLearner(image_shape=(28, 28, 1), ways=5, config=config,
                               filters=8)


@pytest.mark.parametrize("head", ["matching", "protonet"])
def test_head_only_phase_then_joint_phase(head):
  learner = _learner(head=head)
  ep = _episode()
  start = [v.numpy() for v in learner.feature_variables]
  schedule = learner.query_schedule(15, tf.constant([0, 1], tf.int64))
  step = tf.function(learner.step)
  learner.start(start)
  for i in range(3):  # head only: alpha, beta move, f does not
    step(ep.support_images, ep.support_labels, schedule[i], tf.constant(i))
  for a, v in zip(start, learner.feature_variables):
    np.testing.assert_array_equal(a, v.numpy())
  head_layer = learner.classifier.head
  assert not np.allclose(head_layer.gates.numpy(), 0.5)
  for i in range(3, 6):  # joint: f moves too
    step(ep.support_images, ep.support_labels, schedule[i], tf.constant(i))
  assert any(not np.allclose(a, v.numpy())
             for a, v in zip(start, learner.feature_variables))
  # `start` restores theta' and a fresh head.
  learner.start(start)
  np.testing.assert_array_equal(start[0], learner.feature_variables[0].numpy())
  np.testing.assert_allclose(head_layer.gates.numpy(), 0.5)
  assert float(head_layer.scale) == head_layer.initial_scale


@pytest.mark.parametrize("head", ["matching", "protonet"])
def test_fine_tuning_lowers_the_loss_and_classifies_queries(head):
  learner = _learner(head=head, steps=30, head_only_steps=5)
  ep = _episode(seed=2)
  start = [v.numpy() for v in learner.feature_variables]

  @tf.function
  def run():
    learner.start(start)
    before = learner.predict(ep.support_images, ep.support_images,
                             ep.support_labels)
    loss = learner.fine_tune(start, ep.support_images, ep.support_labels,
                             tf.constant([3, 4], tf.int64))
    return before, loss, learner.predict(ep.query_images, ep.support_images,
                                         ep.support_labels)

  _, loss, query_log_probs = run()
  assert float(loss) < 0.5
  predictions = np.argmax(query_log_probs.numpy(), axis=1)
  assert np.mean(predictions == ep.query_labels.numpy()) >= 0.8
  np.testing.assert_allclose(np.exp(query_log_probs.numpy()).sum(1), 1.0,
                             rtol=1e-5)


def test_config_validation():
  # delta is the Glorot mix's (glorot_mix.py), validated where it is used.
  with pytest.raises(ValueError, match="delta must be in"):
    glorot_mix.glorot_mix([np.zeros(1)], [np.zeros(1)], delta=-0.1)
  with pytest.raises(ValueError, match="head_only_steps must be in"):
    sft.DefenseConfig(steps=5, head_only_steps=6)
  with pytest.raises(ValueError, match="unknown head 'dense'"):
    sft.DefenseConfig(head="dense")
  assert sft.DefenseConfig(head="protonet").head.value == "protonet"


# Another value for every DefenseConfig field; the base is `_learner`'s.
_CHANGED = {"head": "protonet", "steps": 7, "head_only_steps": 2, "batch": 4,
            "learning_rate": 0.02, "leave_one_out": False,
            "initial_scale": 3.0}


def test_every_config_field_changes_the_fine_tuned_model():
  """A field that nothing reads (as `delta` was) fails here: each field
  must change the fine-tuned predictions; a new field needs an entry."""
  fields = {f.name for f in dataclasses.fields(sft.DefenseConfig)}
  assert set(_CHANGED) == fields
  ep = _episode(seed=4)
  start = [v.numpy() for v in _learner().feature_variables]

  def fine_tuned(**kwargs):
    learner = _learner(**kwargs)
    learner.fine_tune(start, ep.support_images, ep.support_labels,
                      tf.constant([5, 6], tf.int64))
    return learner.predict(ep.query_images, ep.support_images,
                           ep.support_labels).numpy()

  base = fine_tuned()
  np.testing.assert_array_equal(base, fine_tuned())  # deterministic
  for name, value in _CHANGED.items():
    assert not np.array_equal(base, fine_tuned(**{name: value})), name
