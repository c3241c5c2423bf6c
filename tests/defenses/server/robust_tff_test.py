"""Robust aggregation factories: TFF results equal the pure-TF statistics, the
in-process driver computes the same, and (statically) every robust aggregator
needs individual client updates while the secure mean does not."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedmeta_tf.defenses.server import robust_tf
from fedmeta_tf.defenses.server import spec as robust_spec
from fedmeta_tf.meta import client_work as client_work_lib
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.tff_process import aggregators
from fedmeta_tf.tff_process import contexts
from fedmeta_tf.tff_process import process as process_lib
from tests import conftest

ROBUST = ["median", "trimmed_mean:0.25", "krum:1", "multi_krum:1",
          "norm_clip:2.0"]
VALUE_TYPE = tff.StructWithPythonType(
    [tff.TensorType(np.float32, [3]), tff.TensorType(np.float32, [2, 2])], list)


def _client_values():
  rng = np.random.default_rng(0)
  values = [[rng.normal(size=[3]).astype(np.float32),
             rng.normal(size=[2, 2]).astype(np.float32)] for _ in range(4)]
  values.append([np.full([3], 50., np.float32),
                 np.full([2, 2], -50., np.float32)])  # a boosted outlier
  return values


@pytest.mark.parametrize("spec", ROBUST)
def test_tff_factory_matches_in_process_statistic(spec):
  values = _client_values()
  name, parameter = aggregators.parse_aggregator(spec)
  factory = aggregators.build_aggregator(spec, secure_sum_bound=1.0)
  process = factory.create(VALUE_TYPE)
  expected, metrics = robust_spec.aggregate(name.value, parameter, values)
  with contexts.tff_runtime():
    output = process.next(process.initialize(), values)
  for got, want in zip(output.result, expected):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  if name.value == "norm_clip":
    assert output.measurements["clipped_count"] == metrics["clipped_count"]


def test_median_discards_the_boosted_outlier():
  values = _client_values()
  factory = aggregators.build_aggregator("median", secure_sum_bound=1.0)
  process = factory.create(VALUE_TYPE)
  with contexts.tff_runtime():
    result = process.next(process.initialize(), values).result
  assert np.max(np.abs(result[0])) < 3.0
  assert np.max(np.abs(result[1])) < 3.0
  # The plain mean is dragged by the outlier.
  assert np.mean([v[0] for v in values], axis=0).min() > 5.0


def _tiny_parts():
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


def _tiny_process(aggregator):
  model_fn, work = _tiny_parts()
  return process_lib.build_fedmeta_process(
      model_fn=model_fn, client_work=work,
      aggregation_factory=aggregators.build_aggregator(
          aggregator, secure_sum_bound=1.0),
      inner_lr=0.01, image_shape=(8, 8, 1))


def test_secure_mean_passes_the_static_secure_aggregation_check():
  tff.test.assert_not_contains_unsecure_aggregation(
      _tiny_process("secure_mean").next)


@pytest.mark.parametrize("spec", ROBUST)
def test_robust_aggregators_need_individual_updates(spec):
  # The statistic is computed from every client's update: the round cannot
  # be a secure aggregation, and the static check must say so.
  with pytest.raises(AssertionError):
    tff.test.assert_not_contains_unsecure_aggregation(_tiny_process(spec).next)


def test_bad_specs_raise_clear_errors():
  with pytest.raises(ValueError, match="unknown aggregator"):
    aggregators.build_aggregator("geometric_median", secure_sum_bound=1.0)
  with pytest.raises(ValueError, match="trim fraction"):
    aggregators.build_aggregator("trimmed_mean:0.6", secure_sum_bound=1.0)
  with pytest.raises(ValueError, match="takes no parameter"):
    aggregators.build_aggregator("median:3", secure_sum_bound=1.0)
  with pytest.raises(ValueError, match="must be a int"):
    aggregators.build_aggregator("krum:x", secure_sum_bound=1.0)


def test_robust_statistic_is_not_secure_mean():
  # Sanity: with no outlier, krum(f=0, m=n) is the mean.
  values = _client_values()[:4]
  stacked = [tf.constant(np.stack(ws)) for ws in zip(*values)]
  mean = robust_tf.multi_krum(stacked, num_byzantine=0)
  np.testing.assert_allclose(mean[0], np.mean([v[0] for v in values], 0),
                             rtol=1e-5)


def test_median_round_is_the_same_in_tff_and_in_process():
  from fedmeta_tf.runtime import inprocess  # pylint: disable=g-import-not-at-top
  from fedmeta_tf.tff_process import runner  # pylint: disable=g-import-not-at-top
  model_fn, work = _tiny_parts()
  local = inprocess.InProcessRunner(model_fn=model_fn, client_work=work,
                                    inner_lr=0.01, aggregator="median",
                                    secure_sum_bound=1.0)
  state = local.next(local.initialize(), [0, 1])[0]
  with contexts.tff_runtime():
    tff_runner = runner.TffRunner(model_fn=model_fn, client_work=work,
                                  inner_lr=0.01, aggregator="median",
                                  secure_sum_bound=1.0, image_shape=(8, 8, 1))
    tff_state = tff_runner.next(tff_runner.initialize(), [0, 1])[0]
    tff_weights = tff_runner.weights(tff_state)
  initial = [v.numpy() for v in model_fn().trainable_variables]
  for a, b, w0 in zip(local.weights(state), tff_weights, initial):
    np.testing.assert_allclose(a, b, atol=1e-6)
  assert any(np.abs(a - w0).max() > 0 for a, w0 in zip(tff_weights, initial))
