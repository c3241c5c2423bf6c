"""Robust statistics checked by hand on tiny arrays."""

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.defenses.server import robust_tf


def _stack(*clients):
  """Clients given as lists of arrays -> list of [n, ...] tensors."""
  return [tf.constant(np.stack(ws), tf.float32) for ws in zip(*clients)]


def test_coordinate_median_of_three_known_vectors():
  stacked = _stack([np.array([1., 10., -3.])], [np.array([2., 0., 5.])],
                   [np.array([100., 5., 4.])])
  (median,) = robust_tf.coordinate_median(stacked)
  np.testing.assert_allclose(median, [2., 5., 4.])


def test_median_even_count_averages_middle_values_per_tensor():
  stacked = _stack([np.array([1.]), np.zeros([2, 2])],
                   [np.array([3.]), np.ones([2, 2])],
                   [np.array([10.]), 4 * np.ones([2, 2])],
                   [np.array([-7.]), 9 * np.ones([2, 2])])
  median = robust_tf.coordinate_median(stacked)
  np.testing.assert_allclose(median[0], [2.])
  np.testing.assert_allclose(median[1], 2.5 * np.ones([2, 2]))


def test_trimmed_mean_drops_extremes():
  values = [np.array([v]) for v in (0., 1., 2., 3., 100.)]
  (trimmed,) = robust_tf.trimmed_mean(_stack(*[[v] for v in values]),
                                      trim_fraction=0.2)  # k = 1 of 5
  np.testing.assert_allclose(trimmed, [2.])  # mean of 1, 2, 3
  (untrimmed,) = robust_tf.trimmed_mean(_stack(*[[v] for v in values]),
                                        trim_fraction=0.0)
  np.testing.assert_allclose(untrimmed, [106. / 5])


def test_trimmed_mean_rejects_half():
  with pytest.raises(ValueError, match="trim_fraction"):
    robust_tf.trimmed_mean(_stack([np.ones(1)]), trim_fraction=0.5)


def test_krum_scores_by_hand_and_picks_outlier_free_vector():
  # 1-d points 0, 1, 3 and an outlier 50; n=4, f=1 -> 1 nearest neighbour.
  points = [0., 1., 3., 50.]
  stacked = _stack(*[[np.array([p])] for p in points])
  scores = robust_tf.krum_scores(stacked, num_byzantine=1)
  np.testing.assert_allclose(scores, [1., 1., 4., 47. ** 2])
  (chosen,) = robust_tf.krum(stacked, num_byzantine=1)
  assert float(chosen[0]) in (0., 1.)


def test_krum_with_more_neighbours_selects_the_central_vector():
  # n=5, f=1 -> n-f-2 = 2 neighbours; 2.0 is closest to the cluster.
  points = [[1., 0.], [2., 0.], [3., 0.], [2., 1.], [40., 40.]]
  stacked = _stack(*[[np.array(p)] for p in points])
  (chosen,) = robust_tf.krum(stacked, num_byzantine=1)
  np.testing.assert_allclose(chosen, [2., 0.])


def test_multi_krum_averages_the_n_minus_f_best():
  points = [[0.], [2.], [4.], [1000.]]
  stacked = _stack(*[[np.array(p)] for p in points])
  (mean,) = robust_tf.multi_krum(stacked, num_byzantine=1)  # m = 3
  np.testing.assert_allclose(mean, [2.])


def test_clip_by_global_norm():
  clipped, norm = robust_tf.clip_by_global_norm(
      [tf.constant([3., 0.]), tf.constant([4.])], 1.0)
  assert float(norm) == pytest.approx(5.)
  np.testing.assert_allclose(clipped[0], [0.6, 0.], rtol=1e-6)
  np.testing.assert_allclose(clipped[1], [0.8], rtol=1e-6)
  unclipped, _ = robust_tf.clip_by_global_norm([tf.constant([0.3])], 1.0)
  np.testing.assert_allclose(unclipped[0], [0.3])
