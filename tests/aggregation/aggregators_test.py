"""Aggregator objects: parsing the flag, their TF arithmetic, and (statically)
that `keeps_secure_aggregation` is what TFF's own check says of the round."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.meta import client_work as client_work_lib
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.tff_process import process as process_lib
from tests import conftest

ROBUST = ["median", "trimmed_mean:0.25", "krum:1", "multi_krum:1",
          "norm_clip:2.0"]
SECURE_DEFENSES = ["weak_dp:clip=1.0,noise=0.1", "robust_lr:theta=1",
                   "crfl:rho=1.0,sigma=0.01"]
PLAINTEXT_DEFENSES = ["flame:0.01", "foolsgold"]
EVERY = ["secure_mean", "mean"] + ROBUST + SECURE_DEFENSES + PLAINTEXT_DEFENSES


def tiny_parts():
  """(model_fn, client work) of a two-client round on 8x8 images."""
  pool = conftest.tiny_pool(num_classes=4, examples=4, size=8)
  config = reptile_tf.ReptileConfig(ways=2, shots=2, iterations=1,
                                    meta_batch=1, inner_steps=1,
                                    inner_batch=2)
  work = client_work_lib.BenignReptile(config=config, run_seed=0,
                                       client_pools=[pool.images[:2],
                                                     pool.images[2:]])

  def model_fn():
    return tf.keras.Sequential([tf.keras.Input([8, 8, 1]),
                                tf.keras.layers.Flatten(),
                                tf.keras.layers.Dense(
                                    2, kernel_initializer=tf.keras.initializers
                                    .GlorotUniform(seed=1))])

  return model_fn, work


def test_every_aggregator_is_checked():
  assert {spec.partition(":")[0] for spec in EVERY} == set(
      aggregators.AGGREGATORS)


@pytest.mark.parametrize("spec", EVERY)
def test_keeps_secure_aggregation_agrees_with_the_static_check(spec):
  # The robust statistics are computed from every client's update, so their
  # rounds cannot be secure aggregations; the secure mean's round is, and so
  # are those of the defenses built on secure sums (weak_dp, robust_lr,
  # crfl, whose model step runs in the SERVER-placed server update).
  aggregator = aggregators.parse_aggregator(spec, secure_sum_bound=1.0)
  model_fn, work = tiny_parts()
  process = process_lib.build_fedmeta_process(
      model_fn=model_fn, client_work=work,
      aggregation_factory=aggregator.tff_factory(), inner_lr=0.01,
      image_shape=(8, 8, 1), model_step=aggregator.model_step)
  if aggregator.keeps_secure_aggregation:
    tff.test.assert_not_contains_unsecure_aggregation(process.next)
  else:
    with pytest.raises(AssertionError, match="unsecure"):
      tff.test.assert_not_contains_unsecure_aggregation(process.next)


def test_parse_gives_one_object_with_the_flags_parameters():
  assert aggregators.parse_aggregator(
      "secure_mean", secure_sum_bound=2.0,
      max_update_norm=5.0) == aggregators.SecureMean(2.0, 5.0)
  assert aggregators.parse_aggregator("mean") == aggregators.Mean()
  assert aggregators.parse_aggregator("trimmed_mean:0.25") == (
      aggregators.TrimmedMean(0.25))
  assert aggregators.parse_aggregator("trimmed_mean") == (
      aggregators.TrimmedMean(0.1))
  assert aggregators.parse_aggregator("krum") == aggregators.Krum(1)
  multi = aggregators.parse_aggregator("multi_krum:2")
  assert type(multi) is aggregators.MultiKrum and multi.num_byzantine == 2
  assert aggregators.parse_aggregator("norm_clip:3") == (
      aggregators.NormClip(3.0))
  # Several parameters: name:key=value,...; unset keys keep their defaults,
  # and the flags' secure-sum settings reach the aggregators that have them.
  assert aggregators.parse_aggregator(
      "weak_dp:clip=0.5,noise=0.2", max_update_norm=7.0) == (
          aggregators.WeakDp(clip=0.5, noise=0.2, max_update_norm=7.0))
  assert aggregators.parse_aggregator("weak_dp:noise=0") == (
      aggregators.WeakDp(clip=1.0, noise=0.0))
  assert aggregators.parse_aggregator("weak_dp:0.5") == (
      aggregators.WeakDp(clip=0.5))
  assert aggregators.parse_aggregator(
      "robust_lr:flip_lr=0,theta=3", secure_sum_bound=2.0) == (
          aggregators.RobustLr(theta=3, flip_lr=0.0, secure_sum_bound=2.0))
  assert aggregators.parse_aggregator("robust_lr:6") == (
      aggregators.RobustLr(theta=6, flip_lr=-1.0))
  assert aggregators.parse_aggregator("trimmed_mean:trim_fraction=0.2") == (
      aggregators.TrimmedMean(0.2))
  assert isinstance(aggregators.parse_aggregator("robust_lr"),
                    aggregators.Aggregator)
  assert aggregators.parse_aggregator(
      "crfl:rho=2,sigma=0.1,noise_seed=3", secure_sum_bound=2.0) == (
          aggregators.Crfl(rho=2.0, sigma=0.1, noise_seed=3,
                           secure_sum_bound=2.0))
  assert aggregators.parse_aggregator("crfl:5") == aggregators.Crfl(rho=5.0)


@pytest.mark.parametrize("spec, message", [
    ("geometric_median", "unknown aggregator 'geometric_median'; valid: "
     "secure_mean, mean, median, trimmed_mean, krum, multi_krum, norm_clip, "
     "weak_dp, robust_lr, crfl, flame, foolsgold (some take name:value or "
     "name:key=value,...)"),
    ("trimmed_mean:0.6", "trimmed_mean: trim fraction must be in [0, 0.5), "
     "got 0.6"),
    ("median:3", "aggregator 'median' takes no parameter, got 'median:3'"),
    ("secure_mean:2", "aggregator 'secure_mean' takes no parameter"),
    ("mean:2", "aggregator 'mean' takes no parameter"),
    ("krum:x", "aggregator krum: parameter must be a int, got 'x'"),
    ("multi_krum:-1", "multi_krum: number of attackers f must be >= 0"),
    ("norm_clip:0", "norm_clip: norm must be positive, got 0.0"),
    ("median:k=3", "aggregator 'median' takes no parameter, got 'median:k=3'"),
    ("krum:f=2", "aggregator krum: unknown parameter 'f'; valid: "
     "num_byzantine"),
    ("weak_dp:clip=1.0,nois=0.1", "aggregator weak_dp: unknown parameter "
     "'nois'; valid: clip, noise"),
    ("robust_lr:max_update_norm=5", "aggregator robust_lr: unknown parameter "
     "'max_update_norm'; valid: theta, flip_lr"),
    ("weak_dp:1.0,noise=0.1", "aggregator weak_dp: parameters are key=value "
     "pairs separated by commas, got '1.0,noise=0.1'"),
    ("weak_dp:clip=", "parameters are key=value pairs"),
    ("weak_dp:clip=1,,noise=0", "parameters are key=value pairs"),
    ("weak_dp:clip=1,clip=2", "aggregator weak_dp: a parameter is given "
     "twice in 'clip=1,clip=2'"),
    ("weak_dp:clip=x", "aggregator weak_dp: clip must be a float, got 'x'"),
    ("weak_dp:x", "aggregator weak_dp: parameter must be a float, got 'x'"),
    ("weak_dp:clip=0", "weak_dp: clip must be positive, got 0.0"),
    ("weak_dp:noise=-1", "weak_dp: noise must be >= 0, got -1.0"),
    ("robust_lr:theta=1.5", "aggregator robust_lr: theta must be a int, got "
     "'1.5'"),
    ("robust_lr:-1", "robust_lr: theta must be >= 0, got -1"),
    ("robust_lr:flip_lr=2", "robust_lr: flip_lr must be in [-1, 1], got 2.0"),
    ("crfl:rho=0", "crfl: rho must be positive, got 0.0"),
    ("crfl:sigma=-0.1", "crfl: sigma must be >= 0, got -0.1"),
    ("crfl:noise_seed=1.5", "aggregator crfl: noise_seed must be a int"),
    ("crfl:rho=1,clip=2", "aggregator crfl: unknown parameter 'clip'; "
     "valid: rho, sigma, noise_seed"),
])
def test_bad_specs_raise_clear_errors(spec, message):
  with pytest.raises(ValueError) as error:
    aggregators.parse_aggregator(spec)
  assert message in str(error.value)


def test_secure_mean_settings_are_checked():
  with pytest.raises(ValueError, match="secure_sum_bound must be positive"):
    aggregators.parse_aggregator("secure_mean", secure_sum_bound=0.0)
  with pytest.raises(ValueError, match="max_update_norm must be positive"):
    aggregators.parse_aggregator("secure_mean", max_update_norm=-1.0)


def test_secure_mean_by_hand():
  # Bound 1: [3, -0.5] is clipped to [1, -0.5] (one upper clip); the NaN
  # update is excluded; the mean is over the two accepted updates.
  updates = [[np.array([3.0, -0.5], np.float32)],
             [np.array([0.5, 0.5], np.float32)],
             [np.array([np.nan, 0.0], np.float32)]]
  mean, metrics = aggregators.SecureMean(secure_sum_bound=1.0).aggregate(
      updates, [tf.zeros([2])])
  np.testing.assert_allclose(mean[0], [0.75, 0.0])
  assert metrics == {"secure_upper_clipped_count": 1,
                     "secure_lower_clipped_count": 0,
                     "accepted_updates": 2, "excluded_updates": 1}


@pytest.mark.parametrize("spec", [s for s in EVERY if not s.startswith(
    "crfl")])
def test_model_step_is_the_identity_but_for_crfl(spec):
  weights = [tf.constant([3.0, 4.0]), tf.constant([[12.0]])]
  stepped = aggregators.parse_aggregator(spec).model_step(
      weights, tf.constant(1, tf.int64))
  for a, b in zip(stepped, weights):
    np.testing.assert_array_equal(a, b)


def test_no_accepted_update_gives_a_zero_step():
  mean, metrics = aggregators.SecureMean().aggregate(
      [[np.array([np.inf], np.float32)]], [tf.ones([1]), tf.ones([2, 2])])
  assert [m.shape for m in mean] == [(1,), (2, 2)]
  assert all(not np.any(m) for m in mean)
  assert metrics["excluded_updates"] == 1


def test_norm_clip_by_hand():
  updates = [[np.array([3.0, 4.0], np.float32)],   # norm 5 -> [0.6, 0.8]
             [np.array([0.2, 0.0], np.float32)]]   # kept
  mean, metrics = aggregators.NormClip(1.0).aggregate(updates, None)
  np.testing.assert_allclose(mean[0], [0.4, 0.4], rtol=1e-6)
  assert metrics == {"clipped_count": 1}


def test_in_process_path_does_not_import_tff():
  script = (
      "import sys\n"
      "import numpy as np\n"
      "from fedmeta_tf.aggregation import aggregators\n"
      "from fedmeta_tf.experiments import runners\n"
      "from fedmeta_tf.runtime import inprocess\n"
      "updates = [[np.ones([2], np.float32)], [np.zeros([2], np.float32)]]\n"
      "for name in aggregators.AGGREGATORS:\n"
      "  aggregators.parse_aggregator(name).aggregate(updates, updates[0])\n"
      "assert 'tensorflow_federated' not in sys.modules\n")
  subprocess.run([sys.executable, "-c", script], check=True, timeout=300,
                 cwd=pathlib.Path(__file__).resolve().parents[2])
