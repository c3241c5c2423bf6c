"""Shared by the aggregator tests: a two-tensor value type with five clients'
updates, and one round of an aggregator through both drivers."""

import numpy as np
import tensorflow_federated as tff

from fedmeta_tf.tff_process import contexts
from tests.aggregation.aggregators_test import tiny_parts

VALUE_TYPE = tff.StructWithPythonType(
    [tff.TensorType(np.float32, [3]), tff.TensorType(np.float32, [2, 2])], list)


def five_client_values(last):
  """Four random clients' updates of VALUE_TYPE, then `last` (a faulty or a
  boosted update: what the aggregator under test must handle)."""
  rng = np.random.default_rng(0)
  values = [[rng.normal(size=[3]).astype(np.float32),
             rng.normal(size=[2, 2]).astype(np.float32)] for _ in range(4)]
  return values + [last]


def round_in_both_drivers(aggregator):
  """One two-client round with `aggregator` in-process and under TFF.

  Returns (in-process weights, in-process metrics, TFF weights, TFF
  metrics, the initial weights) and checks that the weights agree (1e-6)
  and that the round moved the model.
  """
  from fedmeta_tf.runtime import inprocess  # pylint: disable=g-import-not-at-top
  from fedmeta_tf.tff_process import runner  # pylint: disable=g-import-not-at-top
  model_fn, work = tiny_parts()
  local = inprocess.InProcessRunner(model_fn=model_fn, client_work=work,
                                    inner_lr=0.01, aggregator=aggregator)
  state, metrics = local.next(local.initialize(), [0, 1])
  with contexts.tff_runtime():
    tff_runner = runner.TffRunner(model_fn=model_fn, client_work=work,
                                  inner_lr=0.01, aggregator=aggregator,
                                  image_shape=(8, 8, 1))
    tff_state, tff_metrics = tff_runner.next(tff_runner.initialize(), [0, 1])
    tff_weights = tff_runner.weights(tff_state)
  initial = [v.numpy() for v in model_fn().trainable_variables]
  for a, b in zip(local.weights(state), tff_weights):
    np.testing.assert_allclose(a, b, atol=1e-6)
  assert any(np.abs(a - w0).max() > 0 for a, w0 in zip(tff_weights, initial))
  return local.weights(state), metrics, tff_weights, tff_metrics, initial
