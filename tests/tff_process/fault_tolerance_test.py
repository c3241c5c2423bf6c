"""Fault-injection tests: faulty updates and dropped clients lose nothing."""

import numpy as np
import pytest
import tensorflow_federated as tff

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.meta import faults
from fedmeta_tf.meta import server_tf
from fedmeta_tf.runtime import inprocess
from fedmeta_tf.tff_process import contexts
from fedmeta_tf.tff_process import process
from fedmeta_tf.tff_process import runner
from tests.tff_process.process_test import CONFIG
from tests.tff_process.process_test import IMAGE_SHAPE
from tests.tff_process.process_test import _client_work
from tests.tff_process.process_test import _model_fn


def _local(work):
  return inprocess.InProcessRunner(
      model_fn=_model_fn, client_work=work, inner_lr=CONFIG.inner_lr,
      aggregator=aggregators.SecureMean(secure_sum_bound=1.0))


def _one_round(round_runner, clients):
  state = round_runner.initialize()
  state, metrics = round_runner.next(state, clients)
  return round_runner.weights(state), metrics


@pytest.mark.parametrize("fault", ["nan", "inf", "huge"])
def test_a_faulty_update_is_excluded_and_counted(fault):
  clean, _ = _one_round(_local(_client_work()), [0, 2])
  faulty_work = faults.FaultInjectingClientWork(_client_work(), {1: fault})
  weights, metrics = _one_round(_local(faulty_work), [0, 1, 2])
  assert metrics["excluded_updates"] == 1
  assert metrics["accepted_updates"] == 2
  for a, b in zip(weights, clean):
    np.testing.assert_allclose(a, b, atol=1e-7)


def test_tff_excludes_faulty_updates_with_secure_sums_only():
  faulty_work = faults.FaultInjectingClientWork(
      _client_work(), {1: "nan", 3: "huge"})
  aggregator = aggregators.SecureMean(secure_sum_bound=1.0,
                                     max_update_norm=1e3)
  factory = aggregator.tff_factory()
  proc = process.build_fedmeta_process(
      model_fn=_model_fn, client_work=faulty_work, aggregation_factory=factory,
      inner_lr=CONFIG.inner_lr, image_shape=IMAGE_SHAPE)
  tff.test.assert_not_contains_unsecure_aggregation(proc.next)
  with contexts.tff_runtime():
    tff_runner = runner.TffRunner(
        model_fn=_model_fn, client_work=faulty_work, inner_lr=CONFIG.inner_lr,
        aggregator=aggregator, image_shape=IMAGE_SHAPE)
    weights, metrics = _one_round(tff_runner, [0, 1, 2, 3])
  assert metrics["excluded_updates"] == 2 and metrics["accepted_updates"] == 2
  expected, _ = _one_round(_local(_client_work()), [0, 2])
  for a, b in zip(weights, expected):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_all_updates_excluded_leaves_the_model_unchanged():
  work = faults.FaultInjectingClientWork(_client_work(), {0: "nan", 1: "inf"})
  local = _local(work)
  before = local.weights(local.initialize())
  weights, metrics = _one_round(local, [0, 1])
  assert metrics["excluded_updates"] == 2
  for a, b in zip(weights, before):
    np.testing.assert_array_equal(a, b)


class TestDropouts:

  def _select(self, rate, policy, round_num=0, clients=10, per_round=4,
              minimum=3):
    return server_tf.select_clients_with_dropouts(
        seed=0, round_num=round_num, num_clients=clients,
        clients_per_round=per_round, min_updates=minimum, dropout_rate=rate,
        policy=policy)

  def test_no_dropout_is_plain_selection(self):
    assert self._select(0.0, "wait") == server_tf.select_clients(
        seed=0, round_num=0, num_clients=10, clients_per_round=4,
        min_updates=3)

  def test_wait_policy_completes_rounds_that_skip_would_lose(self):
    wait = [self._select(0.5, "wait", round_num=r) for r in range(30)]
    skip = [self._select(0.5, "skip", round_num=r) for r in range(30)]
    assert all(len(c) == 3 or c == [] for c in wait + skip)
    # Waiting fails only when fewer than 3 of all 10 clients report
    # (probability ~5% per round at rate 0.5); skipping fails far more.
    assert sum(bool(c) for c in wait) >= 27
    assert sum(bool(c) for c in wait) > sum(bool(c) for c in skip)

  def test_skip_policy_skips_some_rounds_and_is_seeded(self):
    results = [self._select(0.5, "skip", round_num=r) for r in range(40)]
    assert any(r == [] for r in results) and any(r for r in results)
    assert results == [self._select(0.5, "skip", round_num=r)
                       for r in range(40)]

  def test_invalid_rate(self):
    with pytest.raises(ValueError, match="dropout_rate"):
      self._select(1.0, "wait")
