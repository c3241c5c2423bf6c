"""Ranking vote and majority vote, by hand."""

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.defenses.pruning import voting


def test_client_ranking_ranks_least_active_first():
  np.testing.assert_array_equal(
      voting.client_ranking(np.array([0.43, 0.79, 0.21, 0.88, 0.92])),
      [2, 3, 1, 4, 5])


def test_ranking_vote_averages_ranks():
  ranks = np.array([[2, 3, 1, 4, 5], [3, 5, 2, 4, 1]])
  order, score = voting.merge_reports(ranks)
  np.testing.assert_allclose(score, [2.5, 4., 1.5, 4., 3.])
  np.testing.assert_array_equal(order, [2, 0, 4, 1, 3])


def test_majority_mask_and_vote():
  acts = np.array([0.43, 0.79, 0.21, 0.88, 0.92])
  np.testing.assert_array_equal(voting.client_majority_mask(acts, 0.4),
                                [0, 1, 0, 1, 1])
  masks = np.array([[0, 1, 0, 1, 1], [1, 1, 0, 0, 1], [0, 1, 0, 1, 1]])
  order, score = voting.merge_reports(masks)
  np.testing.assert_allclose(score, [1 / 3, 1., 0., 2 / 3, 1.])
  assert order[0] == 2 and order[1] == 0 and order[2] == 3
  with pytest.raises(ValueError, match="pruning_rate"):
    voting.client_majority_mask(acts, 1.5)


def test_mean_channel_activation_sums_space_and_averages_images():
  inputs = tf.keras.Input([2, 2, 1])
  model = tf.keras.Model(inputs, tf.concat([inputs, 2 * inputs], axis=-1))
  images = np.ones([3, 2, 2, 1], np.float32)
  images[0] *= 2  # spatial sums per image: 8, 4, 4 (channel 0)
  np.testing.assert_allclose(
      voting.mean_channel_activation(model, images, batch_size=2),
      [16 / 3, 32 / 3], rtol=1e-6)
