"""Clean shutdown: no TFF worker_binary and no temporary file survive a run
that ends normally or by SIGTERM / SIGINT, and no worker_binary survives a
SIGKILLed run."""

import contextlib
import glob
import signal
import subprocess
import sys
import time

import psutil
import pytest

from fedmeta_tf.data import class_pool
from tests.binaries.train_fedmeta_test import REPO
from tests.binaries.train_fedmeta_test import tiny_flags
from tests.conftest import tiny_pool


def _start(tmp_path, **overrides):
  archive = str(tmp_path / "pool.npz")
  class_pool.save_class_pool_archive(tiny_pool(num_classes=24, examples=10),
                                     archive)
  flags = tiny_flags(archive, tmp_path / "runs", runtime="tff", **overrides)
  args = [sys.executable, "-m", "binaries.train_fedmeta"] + [
      f"--{k}={v}" for k, v in flags.items()]
  # The child gets SIGINT's default disposition, as from an interactive
  # shell: an ignored SIGINT is inherited, and a non-interactive shell
  # starts background jobs (`pytest ... &`, as CI scripts and job runners
  # do) with SIGINT ignored (POSIX; `bash -c 'python3 -c "import signal;
  # print(signal.getsignal(signal.SIGINT))" & wait'` prints 1 = SIG_IGN).
  # No test changes it: checked around every test of the suite.
  return subprocess.Popen(
      args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
      text=True,
      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_workers(proc, deadline_s=180):
  deadline = time.time() + deadline_s
  workers = []
  while not workers:
    assert proc.poll() is None, proc.stderr.read()
    assert time.time() < deadline
    workers = _workers_of(proc)
    time.sleep(0.2)
  return workers


def _workers_of(proc):
  try:
    return [c for c in psutil.Process(proc.pid).children(recursive=True)
            if c.name() == "worker_binary"]
  except psutil.Error:
    return []


def _no_temporary_files(root):
  return not [p for p in glob.glob(f"{root}/**/*", recursive=True)
              if ".tmp" in p or "_temp" in p]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_stops_the_worker(tmp_path, sig):
  proc = _start(tmp_path, rounds=50, episodes_per_round=5)
  workers = _wait_for_workers(proc)
  deadline = time.time() + 180
  # Signal once it has finished a round (metrics.csv written): mid-run, not
  # while it is still starting up (a fixed wait was too short on a loaded
  # machine).
  metrics = tmp_path / "runs" / "tiny" / "metrics.csv"
  while not metrics.exists():
    assert proc.poll() is None, proc.stderr.read()
    assert time.time() < deadline
    time.sleep(0.2)
  proc.send_signal(sig)
  proc.wait(timeout=60)
  gone, alive = psutil.wait_procs(workers, timeout=10)
  assert not alive, f"worker_binary left running after {sig.name}: {alive}"
  assert proc.returncode != 0, proc.stderr.read()[-3000:]
  assert _no_temporary_files(tmp_path / "runs")


def test_normal_exit_leaves_nothing(tmp_path):
  proc = _start(tmp_path, rounds=1)
  seen = []
  while proc.poll() is None:
    seen.extend(w for w in _workers_of(proc) if w not in seen)
    time.sleep(0.1)
  assert proc.returncode == 0, proc.stderr.read()
  assert seen, "the TFF runtime never started a worker"
  _, alive = psutil.wait_procs(seen, timeout=10)
  assert not alive
  assert _no_temporary_files(tmp_path / "runs")


def _running_worker_binaries() -> set[int]:
  """pids `pgrep -f worker_binary` lists, zombies (dead, not yet reaped by
  their new parent) left out."""
  out = subprocess.run(["pgrep", "-f", "worker_binary"], capture_output=True,
                       text=True, check=False).stdout
  alive = set()
  for pid in map(int, out.split()):
    try:
      if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        alive.add(pid)
    except psutil.Error:
      continue
  return alive


def test_sigkill_leaves_no_worker(tmp_path):
  proc = _start(tmp_path, rounds=50, episodes_per_round=5)
  workers = _wait_for_workers(proc)
  ours = {w.pid for w in workers}
  assert ours <= _running_worker_binaries()
  proc.kill()  # SIGKILL: no handler of ours runs.
  proc.wait(timeout=60)
  # Only this run's workers count: other runs may have workers of their own.
  deadline = time.time() + 10
  while ours & _running_worker_binaries() and time.time() < deadline:
    time.sleep(0.1)
  left = ours & _running_worker_binaries()
  for pid in left:  # Do not leave them to the rest of the suite.
    with contextlib.suppress(psutil.Error):
      psutil.Process(pid).kill()
  assert not left, f"worker_binary left running after SIGKILL: {left}"
