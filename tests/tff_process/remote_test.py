"""Rounds on TFF workers reached over gRPC (`tff_process/remote.py`).

Two workers are started on loopback ports with `python -m
binaries.tff_worker` and always stopped. Local results are computed first:
`contexts.tff_runtime()` stops every `worker_binary` child when it exits.
"""

import contextlib
import subprocess
import sys

import numpy as np
import psutil
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from binaries import common
from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.tff_process import contexts
from fedmeta_tf.tff_process import remote
from fedmeta_tf.tff_process import runner
from tests.tff_process.process_test import _client_work
from tests.tff_process.process_test import _model_fn
from tests.tff_process.process_test import CONFIG
from tests.tff_process.process_test import IMAGE_SHAPE


@contextlib.contextmanager
def _workers(n=2):
  """`n` `binaries.tff_worker` processes on free loopback ports."""
  processes = []
  try:
    ports = []
    for _ in range(n):
      ports.append(remote.free_port())
      processes.append(subprocess.Popen(
          [sys.executable, "-m", "binaries.tff_worker", f"--port={ports[-1]}"],
          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    yield [f"localhost:{p}" for p in ports], processes
  finally:
    remote.stop_processes(processes)
  assert all(p.poll() is not None for p in processes)


@tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
def _plain_sum(values):
  return tff.federated_sum(values)


@tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
def _secure_and_plain_sums(values):
  quantised = tff.federated_map(
      tff.tensorflow.computation(lambda v: tf.cast(v * 100, tf.int32),
                                 np.float32), values)
  return (tff.federated_secure_sum_bitwidth(quantised, 20),
          tff.federated_sum(values),
          tff.federated_secure_sum(quantised, 1000))


class TestFlags:

  def test_parse_workers(self):
    assert remote.parse_workers("a:1, 10.0.0.2:8000,[::1]:9") == [
        "a:1", "10.0.0.2:8000", "[::1]:9"]

  @pytest.mark.parametrize("spec,message", [
      ("", "no empty entries"), ("a:1,", "no empty entries"),
      ("a", "'a' is not host:port"), ("a:0", "'a:0' is not host:port"),
      ("a:70000", "is not host:port"), ("a:1,a:1", "names a worker twice")])
  def test_bad_workers_are_one_line_errors(self, spec, message):
    with pytest.raises(ValueError, match=message) as e:
      remote.parse_workers(spec)
    assert "\n" not in str(e.value)

  def test_workers_need_the_tff_runtime(self):
    assert common.tff_workers_from_flag(None, "inprocess") is None
    assert common.tff_workers_from_flag("h:1", "tff") == ["h:1"]
    with pytest.raises(ValueError, match="needs --runtime=tff"):
      common.tff_workers_from_flag("h:1", "inprocess")

  def test_silent_worker_is_a_one_line_error(self):
    with pytest.raises(ValueError, match="did not answer within 0.5 s") as e:
      remote.create_remote_context([f"localhost:{remote.free_port()}"],
                                   connect_timeout_s=0.5)
    assert "\n" not in str(e.value)

  def test_lost_worker_is_a_one_line_error(self):
    with _workers(1) as (targets, processes):
      with remote.remote_tff_runtime(targets, retry_s=1.0):
        assert _plain_sum([1.0, 2.0]) == 3.0
        processes[0].kill()
        processes[0].wait()
        with pytest.raises(remote.WorkerLostError,
                           match="stopped answering for 1 s") as e:
          _plain_sum([1.0, 2.0])
    assert "\n" not in str(e.value)

  @pytest.mark.parametrize("args,message", [
      ([], "--port is required"), (["--port=0"], "must be in 1..65535"),
      (["--port=x"], "flag --port=x")])
  def test_worker_binary_bad_flags(self, args, message):
    result = subprocess.run([sys.executable, "-m", "binaries.tff_worker",
                             *args], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


ROUNDS = ([0, 1, 2], [1, 3])
SUMMANDS = [1.0, 2.0, 3.0, 4.5, -1.25]


def _run_rounds(work):
  tff_runner = runner.TffRunner(
      model_fn=_model_fn, client_work=work, inner_lr=CONFIG.inner_lr,
      aggregator=aggregators.SecureMean(secure_sum_bound=1.0),
      image_shape=IMAGE_SHAPE)
  state = tff_runner.initialize()
  metrics = []
  for clients in ROUNDS:
    state, m = tff_runner.next(state, clients)
    metrics.append(m)
  return tff_runner.weights(state), metrics


@pytest.fixture(scope="module")
def work():
  return _client_work()


@pytest.fixture(scope="module")
def local_results(work):
  """Results of the local test context, computed before any worker starts."""
  with contexts.tff_runtime():
    return {"sums": _secure_and_plain_sums(SUMMANDS),
            "rounds": _run_rounds(work)}


@pytest.fixture(scope="module")
def workers(local_results):
  del local_results  # only orders the fixtures
  with _workers() as targets_and_processes:
    yield targets_and_processes
  assert not contexts.worker_processes()


class TestExecution:

  def test_secure_sum_over_two_workers_equals_the_local_context(
      self, local_results, workers):
    targets, _ = workers
    with contexts.tff_runtime(workers=",".join(targets)):
      distributed = _secure_and_plain_sums(SUMMANDS)
    assert local_results["sums"] == (925, 9.25, 925)
    assert distributed == local_results["sums"]

  def test_fedmeta_rounds_on_two_workers_equal_the_local_context(
      self, work, local_results, workers):
    targets, processes = workers
    busy = [psutil.Process(p.pid).cpu_times().user for p in processes]
    with contexts.tff_runtime(workers=targets):
      weights, metrics = _run_rounds(work)
    busy = [psutil.Process(p.pid).cpu_times().user - b
            for p, b in zip(processes, busy)]
    local_weights, local_metrics = local_results["rounds"]
    assert metrics == local_metrics
    assert metrics[0]["accepted_updates"] == 3
    for a, b in zip(weights, local_weights):
      np.testing.assert_array_equal(a, b)
    # Both workers trained clients (3 clients: 2 + 1; 2 clients: 1 + 1).
    assert min(busy) > 0.05, busy
