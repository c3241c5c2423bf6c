"""The defenses that keep secure aggregation (weak_dp, robust_lr, crfl): their
math by hand, the TFF factory equal to the in-process aggregate (noise off;
the noise's scale checked statistically in both), a round through both
drivers, and CRFL's model perturbation (its seeded noise the same in both).
That their TFF rounds hold only secure sums is checked in aggregators_test.py
(test_keeps_secure_aggregation_...)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.aggregation import secure_defenses
from fedmeta_tf.tff_process import contexts
from fedmeta_tf.tff_process import process as process_lib
from tests.aggregation.aggregators_test import tiny_parts
from tests.aggregation.round_helpers import VALUE_TYPE
from tests.aggregation.round_helpers import five_client_values
from tests.aggregation.round_helpers import round_in_both_drivers

def _client_values():
  """Five clients' updates, the last one faulty (NaN): it must be excluded."""
  return five_client_values([np.array([np.nan, 0, 0], np.float32),
                             np.zeros([2, 2], np.float32)])


def _tff_next(aggregator, values, value_type=VALUE_TYPE):
  process = aggregator.tff_factory().create(value_type)
  with contexts.tff_runtime():
    return process.next(process.initialize(), values)


def test_weak_dp_by_hand_without_noise():
  updates = [[np.array([3.0, 4.0], np.float32)],   # norm 5 -> [0.6, 0.8]
             [np.array([0.2, 0.0], np.float32)],   # kept
             [np.array([np.inf, 0.0], np.float32)]]  # excluded
  mean, metrics = aggregators.WeakDp(clip=1.0, noise=0.0).aggregate(
      updates, [tf.zeros([2])])
  np.testing.assert_allclose(mean[0], [0.4, 0.4], rtol=1e-6)
  assert metrics == {"accepted_updates": 2, "excluded_updates": 1,
                     "clipped_count": 1}


# Clip 2 clips two of the four accepted updates (norms 1.6, 3.0, 1.9, 2.2);
# with four clients the sign agreements are 0, 2 or 4, so theta 2 flips some
# coordinates and keeps others.
@pytest.mark.parametrize("spec", ["weak_dp:clip=2.0,noise=0",
                                  "robust_lr:theta=2",
                                  "robust_lr:theta=2,flip_lr=0",
                                  "robust_lr:theta=0"])
def test_tff_factory_matches_in_process(spec):
  values = _client_values()
  aggregator = aggregators.parse_aggregator(spec)
  expected, metrics = aggregator.aggregate(values, values[0])
  output = _tff_next(aggregator, values)
  for got, want in zip(output.result, expected):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  for key, value in metrics.items():
    np.testing.assert_allclose(output.measurements[key], value, rtol=1e-6)
  assert metrics["accepted_updates"] == 4 and metrics["excluded_updates"] == 1
  if "clipped_count" in metrics:
    assert metrics["clipped_count"] == 2
  if spec == "robust_lr:theta=2":
    assert metrics["flipped_fraction"] == pytest.approx(3 / 7)


@pytest.mark.parametrize("driver", ["in_process", "tff"])
def test_weak_dp_noise_has_stddev_noise_times_clip_over_count(driver):
  # Four zero updates: the result is the noise alone, N(0, (z C)^2) / 4.
  size, clip, noise = 20000, 2.0, 0.5
  values = [[np.zeros([size], np.float32)] for _ in range(4)]
  aggregator = aggregators.WeakDp(clip=clip, noise=noise)
  if driver == "tff":
    result = _tff_next(aggregator, values, tff.StructWithPythonType(
        [tff.TensorType(np.float32, [size])], list)).result
  else:
    result, _ = aggregator.aggregate(values, values[0])
  sample = np.asarray(result[0])
  assert abs(np.std(sample) - noise * clip / 4) < 0.03 * noise * clip / 4
  assert abs(np.mean(sample)) < 5 * noise * clip / 4 / np.sqrt(size)


def test_robust_lr_by_hand():
  # Signs per coordinate: [+, +, +] -> agreement 3; [+, -, +] -> 1. With
  # theta 2 the second coordinate's step is reversed (the paper's rule) or
  # held (flip_lr 0). The NaN update is excluded and casts no sign.
  updates = [[np.array([1.0, 1.0], np.float32)],
             [np.array([1.0, -1.0], np.float32)],
             [np.array([1.0, 2.0], np.float32)],
             [np.array([np.nan, -5.0], np.float32)]]
  mean, metrics = aggregators.RobustLr(theta=2).aggregate(
      updates, [tf.zeros([2])])
  np.testing.assert_allclose(mean[0], [1.0, -2.0 / 3.0], rtol=1e-6)
  assert metrics == {"flipped_fraction": 0.5, "accepted_updates": 3,
                     "excluded_updates": 1}
  held, _ = aggregators.RobustLr(theta=2, flip_lr=0.0).aggregate(
      updates, [tf.zeros([2])])
  np.testing.assert_allclose(held[0], [1.0, 0.0], rtol=1e-6)
  # theta above the number of clients: every coordinate reversed.
  reversed_all, metrics = aggregators.RobustLr(theta=4).aggregate(
      updates, [tf.zeros([2])])
  np.testing.assert_allclose(reversed_all[0], [-1.0, -2.0 / 3.0], rtol=1e-6)
  assert metrics["flipped_fraction"] == 1.0


def test_robust_lr_clips_like_the_secure_mean():
  # Bound 1.5: [1, 4] is summed as [1, 1.5], as the secure sum clips it.
  updates = [[np.array([1.0, 4.0], np.float32)],
             [np.array([1.0, 1.0], np.float32)]]
  mean, _ = aggregators.RobustLr(theta=0, secure_sum_bound=1.5).aggregate(
      updates, [tf.zeros([2])])
  np.testing.assert_allclose(mean[0], [1.0, 1.25], rtol=1e-6)


def test_tffs_stock_dp_mean_is_not_a_secure_aggregation():
  # Why weak_dp builds its own DP factory: gaussian_fixed sums the records
  # with a plain federated_sum; ours (aggregators_test.py) passes the check.
  model_fn, work = tiny_parts()
  process = process_lib.build_fedmeta_process(
      model_fn=model_fn, client_work=work, inner_lr=0.01,
      aggregation_factory=tff.aggregators.DifferentiallyPrivateFactory
      .gaussian_fixed(noise_multiplier=0.1, clients_per_round=2.0, clip=1.0),
      image_shape=(8, 8, 1))
  with pytest.raises(AssertionError, match="unsecure"):
    tff.test.assert_not_contains_unsecure_aggregation(process.next)


@pytest.mark.parametrize("spec", ["weak_dp:clip=0.05,noise=0",
                                  "robust_lr:theta=2"])
def test_round_is_the_same_in_tff_and_in_process(spec):
  _, metrics, _, tff_metrics, _ = round_in_both_drivers(
      aggregators.parse_aggregator(spec))
  for key, value in metrics.items():
    np.testing.assert_allclose(tff_metrics[key], value, rtol=1e-6)


def test_crfl_perturbation_clips_the_model_then_adds_noise():
  weights = [tf.constant([3.0, 0.0]), tf.constant([[4.0]])]  # norm 5
  clipped = secure_defenses.crfl_perturb_model(weights, rho=1.0, sigma=0.0)
  np.testing.assert_allclose(clipped[0], [0.6, 0.0], rtol=1e-6)
  np.testing.assert_allclose(clipped[1], [[0.8]], rtol=1e-6)
  small = secure_defenses.crfl_perturb_model(weights, rho=10.0, sigma=0.0)
  np.testing.assert_allclose(small[0], [3.0, 0.0])
  noisy = secure_defenses.crfl_perturb_model([tf.zeros([20000])], rho=1.0,
                                             sigma=0.01)
  assert abs(np.std(noisy[0]) - 0.01) < 0.0003


def test_crfl_seeded_noise_depends_on_the_seed_and_the_round():
  crfl = aggregators.Crfl(rho=100.0, sigma=0.1, noise_seed=3)
  weights = [tf.zeros([50]), tf.zeros([5, 10])]

  def step(aggregator, round_num):
    return np.concatenate([np.ravel(x) for x in aggregator.model_step(
        weights, tf.constant(round_num, tf.int64))])

  np.testing.assert_array_equal(step(crfl, 1), step(crfl, 1))
  assert not np.allclose(step(crfl, 1), step(crfl, 2))
  other = aggregators.Crfl(rho=100.0, sigma=0.1, noise_seed=4)
  assert not np.allclose(step(crfl, 1), step(other, 1))
  assert abs(np.std(step(crfl, 1)) - 0.1) < 0.03
  clipped = aggregators.Crfl(rho=1.0, sigma=0.0).model_step(
      [tf.constant([3.0, 0.0]), tf.constant([[4.0]])], tf.constant(1))
  np.testing.assert_allclose(clipped[0], [0.6, 0.0], rtol=1e-6)


def test_crfl_aggregate_is_the_secure_mean():
  updates = _client_values()
  crfl_mean, crfl_metrics = aggregators.Crfl(secure_sum_bound=1.0).aggregate(
      updates, updates[0])
  mean, metrics = aggregators.SecureMean(secure_sum_bound=1.0).aggregate(
      updates, updates[0])
  for a, b in zip(crfl_mean, mean):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  assert crfl_metrics == metrics


@pytest.mark.parametrize("spec, rho, sigma", [
    ("crfl:rho=100,sigma=0", 100.0, 0.0),
    ("crfl:rho=0.5,sigma=0", 0.5, 0.0),
    ("crfl:rho=0.5,sigma=0.01,noise_seed=3", 0.5, 0.01)])
def test_crfl_round_is_the_same_in_both_drivers_and_clips_the_model(
    spec, rho, sigma):
  # round_in_both_drivers checks the two drivers' weights agree (the seeded
  # noise included); the model after the round has norm <= rho + noise.
  weights, metrics, _, tff_metrics, initial = round_in_both_drivers(
      aggregators.parse_aggregator(spec))
  for key, value in metrics.items():
    np.testing.assert_allclose(tff_metrics[key], value, rtol=1e-6)
  size = sum(w.size for w in weights)
  norm = np.sqrt(sum(np.sum(np.square(w)) for w in weights))
  assert norm <= rho * (1 + 1e-5) + 3 * sigma * np.sqrt(size)
  if rho < 1.0:  # the tiny model's initial norm is about 2: clipped
    assert np.sqrt(sum(np.sum(np.square(w)) for w in initial)) > rho
    if sigma == 0:
      np.testing.assert_allclose(norm, rho, rtol=1e-5)
