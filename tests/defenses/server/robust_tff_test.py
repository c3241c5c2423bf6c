"""Robust aggregation factories: TFF results equal the pure-TF statistics and
the in-process driver computes the same. (That every robust aggregator needs
individual client updates while the secure mean does not is checked
statically in tests/aggregation/aggregators_test.py.)"""

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.defenses.server import robust_tf
from fedmeta_tf.tff_process import contexts
from tests.aggregation.aggregators_test import ROBUST
from tests.aggregation.aggregators_test import tiny_parts
from tests.aggregation.round_helpers import VALUE_TYPE
from tests.aggregation.round_helpers import five_client_values

def _client_values():
  return five_client_values([np.full([3], 50., np.float32),
                             np.full([2, 2], -50., np.float32)])  # boosted


@pytest.mark.parametrize("spec", ROBUST)
def test_tff_factory_matches_in_process_statistic(spec):
  values = _client_values()
  aggregator = aggregators.parse_aggregator(spec)
  process = aggregator.tff_factory().create(VALUE_TYPE)
  expected, metrics = aggregator.aggregate(values, values[0])
  with contexts.tff_runtime():
    output = process.next(process.initialize(), values)
  for got, want in zip(output.result, expected):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  if aggregator.name == "norm_clip":
    assert output.measurements["clipped_count"] == metrics["clipped_count"]


def test_median_discards_the_boosted_outlier():
  values = _client_values()
  process = aggregators.Median().tff_factory().create(VALUE_TYPE)
  with contexts.tff_runtime():
    result = process.next(process.initialize(), values).result
  assert np.max(np.abs(result[0])) < 3.0
  assert np.max(np.abs(result[1])) < 3.0
  # The plain mean is dragged by the outlier.
  assert np.mean([v[0] for v in values], axis=0).min() > 5.0


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
  model_fn, work = tiny_parts()
  local = inprocess.InProcessRunner(model_fn=model_fn, client_work=work,
                                    inner_lr=0.01,
                                    aggregator=aggregators.Median())
  state = local.next(local.initialize(), [0, 1])[0]
  with contexts.tff_runtime():
    tff_runner = runner.TffRunner(model_fn=model_fn, client_work=work,
                                  inner_lr=0.01,
                                  aggregator=aggregators.Median(),
                                  image_shape=(8, 8, 1))
    tff_state = tff_runner.next(tff_runner.initialize(), [0, 1])[0]
    tff_weights = tff_runner.weights(tff_state)
  initial = [v.numpy() for v in model_fn().trainable_variables]
  for a, b, w0 in zip(local.weights(state), tff_weights, initial):
    np.testing.assert_allclose(a, b, atol=1e-6)
  assert any(np.abs(a - w0).max() > 0 for a, w0 in zip(tff_weights, initial))
