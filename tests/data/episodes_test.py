"""Tests for fedmeta_tf.data.episodes."""

import numpy as np
import tensorflow as tf

from fedmeta_tf.data import episodes


def _labelled_pool(num_classes=7, examples=6):
  # Pixel value encodes (class, example) so picks can be decoded.
  values = np.arange(num_classes * examples, dtype=np.uint8).reshape(
      num_classes, examples)
  return tf.constant(np.broadcast_to(values[:, :, None, None, None],
                                     (num_classes, examples, 4, 4, 1)).copy())


def _decode(images):
  value = np.rint(images[:, 0, 0, 0] * 255).astype(int)
  return value // 6, value % 6


def test_episode_structure():
  ep = episodes.sample_episode(_labelled_pool(), ways=3, shots=2, queries=2,
                               seed=[1, 2])
  assert ep.support_images.shape == (6, 4, 4, 1)
  assert ep.query_images.shape == (6, 4, 4, 1)
  np.testing.assert_array_equal(ep.support_labels, [0, 0, 1, 1, 2, 2])
  s_cls, s_ex = _decode(ep.support_images.numpy())
  q_cls, q_ex = _decode(ep.query_images.numpy())
  # Label i is always the same pool class; 3 distinct classes.
  assert len(set(s_cls)) == 3
  for label in range(3):
    classes = set(s_cls[ep.support_labels.numpy() == label]) | set(
        q_cls[ep.query_labels.numpy() == label])
    assert len(classes) == 1
    # Support and query examples of a class are distinct.
    used = list(s_ex[ep.support_labels.numpy() == label]) + list(
        q_ex[ep.query_labels.numpy() == label])
    assert len(set(used)) == 4


def test_same_seed_same_episode_other_seed_other_episode():
  pool = _labelled_pool()
  seed = episodes.episode_seed(5, episodes.STREAM_TRAIN, 3, 1, 7)
  a = episodes.sample_episode(pool, ways=3, shots=2, queries=1, seed=seed)
  b = episodes.sample_episode(pool, ways=3, shots=2, queries=1, seed=seed)
  c = episodes.sample_episode(
      pool, ways=3, shots=2, queries=1,
      seed=episodes.episode_seed(5, episodes.STREAM_TRAIN, 3, 1, 8))
  np.testing.assert_array_equal(a.support_images, b.support_images)
  assert not np.array_equal(a.support_images, c.support_images)


def test_fold_seed_is_a_pure_function_of_its_coordinates():
  a = episodes.fold_seed(0, 1, 2).numpy()
  assert np.array_equal(a, episodes.fold_seed(0, 1, 2).numpy())
  assert not np.array_equal(a, episodes.fold_seed(0, 2, 1).numpy())


def test_stateless_choice_is_distinct_and_uniform():
  counts = np.zeros(10)
  for i in range(300):
    picked = episodes.stateless_choice(10, 3, [i, 0]).numpy()
    assert len(set(picked)) == 3
    counts[picked] += 1
  assert counts.min() > 60 and counts.max() < 120  # expected 90 each
