"""Tests for fedmeta_tf.models.matching (matching network and ProtoNet heads)."""

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.models import conv4
from fedmeta_tf.models import matching


def _head(kind, dim=3, scale=None):
  head = matching.build_head(kind, initial_scale=scale)
  head.build([None, dim])
  return head


def test_matching_head_matches_a_hand_computation():
  head = _head("matching", scale=2.0)
  head.gate_logits.assign([0.0, 100.0, -100.0])  # alpha ~ (0.5, 1, 0)
  query = tf.constant([[1.0, 1.0, 5.0]])
  support = tf.constant([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
  onehot = tf.one_hot([0, 1, 1], 2)
  log_probs = head(query, support, onehot).numpy()
  # alpha ⊙ q = (0.5, 1, 0): cosines 0.5/|q|, 1/|q|, 1.5/(|q| sqrt 2).
  norm = np.sqrt(1.25)
  c = 2.0 * np.array([0.5 / norm, 1 / norm, 1.5 / (norm * np.sqrt(2))])
  attention = np.exp(c) / np.exp(c).sum()
  expected = np.array([attention[0], attention[1] + attention[2]])
  np.testing.assert_allclose(np.exp(log_probs[0]), expected, rtol=1e-5)


def test_gates_are_in_unit_interval_and_start_as_the_ungated_network():
  head = _head("matching", dim=4)
  np.testing.assert_allclose(head.gates.numpy(), 0.5)
  head.gate_logits.assign([-50.0, -1.0, 1.0, 50.0])
  assert np.all((head.gates.numpy() >= 0) & (head.gates.numpy() <= 1))
  # At the initial (uniform) gates the score is beta * plain cosine.
  head.reset()
  q = tf.constant([[3.0, 1.0, 0.0, 2.0]])
  s = tf.constant([[1.0, 2.0, 3.0, 4.0]])
  cosine = float(tf.reduce_sum(tf.math.l2_normalize(q, -1) *
                               tf.math.l2_normalize(s, -1)))
  np.testing.assert_allclose(head.scores(q, s).numpy()[0, 0], 10.0 * cosine,
                             rtol=1e-5)


def test_exclusion_removes_a_support_example_from_the_attention():
  head = _head("matching", dim=2)
  support = tf.constant([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
  onehot = tf.one_hot([0, 1, 1], 2)
  query = support[:2]
  exclude = matching.leave_one_out_mask(tf.constant([0, 1]), 3)
  probs = np.exp(head(query, support, onehot, exclude=exclude).numpy())
  # Query 0 is the only class-0 example: left out, nothing of class 0 remains.
  np.testing.assert_allclose(probs[0], [0.0, 1.0], atol=1e-6)
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_protonet_is_softmax_of_negative_squared_distance_to_class_means():
  head = _head("protonet", dim=2)
  support = tf.constant([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
  onehot = tf.one_hot([0, 0, 1], 2)
  query = tf.constant([[1.0, 1.0]])
  log_probs = head(query, support, onehot).numpy()
  # Prototypes (1, 0) and (0, 4); alpha = 0.5, beta = 4: plain distances.
  d = np.array([1.0, 1.0 + 9.0])
  expected = np.exp(-d) / np.exp(-d).sum()
  np.testing.assert_allclose(np.exp(log_probs[0]), expected, rtol=1e-5)


def test_protonet_leave_one_out_drops_the_query_from_its_prototype():
  head = _head("protonet", dim=1)
  support = tf.constant([[0.0], [2.0], [10.0], [12.0]])
  onehot = tf.one_hot([0, 0, 1, 1], 2)
  exclude = matching.leave_one_out_mask(tf.constant([0]), 4)
  log_probs = head(support[:1], support, onehot, exclude=exclude).numpy()
  # Prototype of class 0 without example 0 is 2.0; class 1's is 11.0.
  d = np.array([4.0, 121.0])
  expected = -d - np.log(np.exp(-d).sum())
  np.testing.assert_allclose(log_probs[0], expected, rtol=1e-5)


def test_few_shot_classifier_shapes_and_head_variables():
  features = conv4.build_feature_extractor((28, 28, 1), filters=8)
  classifier = matching.FewShotClassifier(features,
                                          matching.build_head("matching"))
  images = tf.random.uniform([6, 28, 28, 1], seed=0)
  labels = tf.constant([0, 0, 1, 1, 2, 2])
  memory = classifier.embed(images)
  assert memory.shape == (6, 8)
  out = classifier(images[:4], memory, tf.one_hot(labels, 3))
  assert out.shape == (4, 3)
  # alpha (one gate per feature) and beta: 8 + 1 head parameters.
  assert sum(int(np.prod(v.shape)) for v in classifier.head_variables) == 9
  train = classifier.support_log_probs(images, labels, tf.constant([1, 4]),
                                       num_classes=3, leave_one_out=True)
  assert train.shape == (2, 3)


def test_without_leave_one_out_a_query_matches_itself():
  features = conv4.build_feature_extractor((28, 28, 1), filters=8, seed=3)
  classifier = matching.FewShotClassifier(
      features, matching.build_head("matching", initial_scale=200.0))
  images = tf.random.uniform([6, 28, 28, 1], seed=1)
  labels = tf.constant([0, 1, 2, 0, 1, 2])
  idx = tf.range(6)
  with_self = classifier.support_log_probs(images, labels, idx, num_classes=3,
                                           leave_one_out=False)
  without = classifier.support_log_probs(images, labels, idx, num_classes=3,
                                         leave_one_out=True)
  own = lambda lp: tf.gather(lp, labels, batch_dims=1).numpy()
  # A large beta puts all attention on the most similar example: itself.
  assert np.all(own(with_self) > np.log(0.9))
  assert np.mean(own(without)) < np.mean(own(with_self))


def test_unknown_head_and_bad_scale_are_rejected():
  with pytest.raises(ValueError, match="unknown head 'knn'"):
    matching.build_head("knn")
  with pytest.raises(ValueError, match="initial_scale"):
    matching.build_head("matching", initial_scale=0.0)
