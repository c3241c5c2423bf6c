"""Tests for the TFF process: type signatures, secure aggregation, execution.

Type-signature and static tests are kept apart from execution tests (TFF's
`aggregators/secure_test.py` layout).
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.meta import client_work
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.models import conv4
from fedmeta_tf.runtime import inprocess
from fedmeta_tf.tff_process import contexts
from fedmeta_tf.tff_process import process
from fedmeta_tf.tff_process import runner
from tests.conftest import tiny_pool

CONFIG = reptile_tf.ReptileConfig(ways=3, shots=2, iterations=2, meta_batch=2,
                                  inner_steps=3, inner_batch=4)
IMAGE_SHAPE = (28, 28, 1)


def _model_fn():
  return conv4.build_conv4(IMAGE_SHAPE, 3, filters=4, seed=0)


def _client_work(config=CONFIG):
  pools = [tiny_pool(num_classes=6, examples=6, seed=c).images
           for c in range(4)]
  return client_work.BenignReptile(config=config, run_seed=7,
                                   client_pools=pools)


def _process(aggregator="secure_mean"):
  parsed = aggregators.parse_aggregator(aggregator, secure_sum_bound=1.0)
  return process.build_fedmeta_process(
      model_fn=_model_fn, client_work=_client_work(),
      aggregation_factory=parsed.tff_factory(),
      inner_lr=CONFIG.inner_lr, image_shape=IMAGE_SHAPE,
      model_step=parsed.model_step)


class TestTypeSignatures:

  def test_next_takes_client_pools_and_returns_the_state(self):
    proc = _process()
    param = proc.next.type_signature.parameter
    state_type, data_type = param[0], param[1]
    assert data_type.placement is tff.CLIENTS
    assert tuple(data_type.member.pool.shape) == (None, 6, 28, 28, 1)
    assert proc.next.type_signature.result[0] == state_type
    weights = state_type.member.model.weights
    assert len(weights) == len(_model_fn().trainable_variables)

  def test_secure_mean_contains_no_unsecure_aggregation(self):
    tff.test.assert_not_contains_unsecure_aggregation(_process().next)

  def test_plain_mean_fails_the_static_check(self):
    with pytest.raises(AssertionError, match="unsecure"):
      tff.test.assert_not_contains_unsecure_aggregation(
          _process("mean").next)

  def test_a_model_step_keeps_the_state_and_the_secure_aggregation(self):
    # CRFL's model step runs inside the SERVER-placed server update: the
    # round's type (and so the saved round checkpoints) is secure_mean's,
    # and the round still holds only secure aggregation.
    crfl = _process("crfl:rho=1.0,sigma=0.01")
    assert crfl.next.type_signature == _process().next.type_signature
    tff.test.assert_not_contains_unsecure_aggregation(crfl.next)

  def test_unknown_aggregator_is_a_clear_error(self):
    with pytest.raises(ValueError, match="unknown aggregator 'medain'"):
      aggregators.parse_aggregator("medain", secure_sum_bound=1.0)


class TestExecution:

  # The batched meta-batch (stacked Conv4 in one computation) runs in TFF's
  # C++ worker as it does in process.
  @pytest.mark.parametrize("mode", ["sequential", "batched"])
  def test_tff_and_inprocess_give_the_same_global_model(self, mode):
    work = _client_work(reptile_tf.ReptileConfig(
        **{**CONFIG.__dict__, "meta_batch_mode": mode}))
    with contexts.tff_runtime():
      tff_runner = runner.TffRunner(
          model_fn=_model_fn, client_work=work, inner_lr=CONFIG.inner_lr,
          aggregator=aggregators.SecureMean(secure_sum_bound=1.0),
          image_shape=IMAGE_SHAPE)
      state = tff_runner.initialize()
      for clients in ([0, 2], [1, 3]):
        state, metrics = tff_runner.next(state, clients)
      tff_weights = tff_runner.weights(state)
    assert metrics["secure_upper_clipped_count"] == 0
    assert not contexts.worker_processes()

    local = inprocess.InProcessRunner(
        model_fn=_model_fn, client_work=work, inner_lr=CONFIG.inner_lr,
        aggregator=aggregators.SecureMean(secure_sum_bound=1.0))
    state = local.initialize()
    for clients in ([0, 2], [1, 3]):
      state, _ = local.next(state, clients)
    local_weights = local.weights(state)
    initial = [v.numpy() for v in _model_fn().trainable_variables]
    moved = max(np.max(np.abs(a - b)) for a, b in zip(local_weights, initial))
    assert moved > 1e-3
    for a, b in zip(tff_weights, local_weights):
      np.testing.assert_allclose(a, b, atol=1e-6)

  def test_secure_sum_clips_and_counts(self):
    work = _client_work()
    local = inprocess.InProcessRunner(
        model_fn=_model_fn, client_work=work, inner_lr=0.5,
        aggregator=aggregators.SecureMean(secure_sum_bound=1e-4))
    state = local.initialize()
    before = local.weights(state)
    state, metrics = local.next(state, [0, 1])
    assert metrics["secure_upper_clipped_count"] == 2
    step = max(np.max(np.abs(a - b)) for a, b in zip(local.weights(state),
                                                      before))
    assert step <= 1e-4 + 1e-7
