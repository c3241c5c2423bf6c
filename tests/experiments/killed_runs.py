"""Runs a binary in a subprocess and kills it with SIGKILL mid-run.

Shared by the resume tests: a run killed at any point (kill -9, nothing
flushed) and re-run with the same command must end with the model and
metrics of an uninterrupted run.
"""

import os
import signal
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def env() -> dict:
  """The environment of a deterministic run."""
  return dict(os.environ, TF_DETERMINISTIC_OPS="1", TF_CPP_MIN_LOG_LEVEL="2")


def run(args, timeout: float = 300) -> subprocess.CompletedProcess:
  """Runs `args` from the repository root to the end; raises on failure."""
  return subprocess.run(args, cwd=REPO, env=env(), check=True,
                        capture_output=True, timeout=timeout)


def kill_when_exists(args, path, timeout: float = 240) -> None:
  """Starts `args` and kills it with SIGKILL as soon as `path` exists (a
  round's checkpoint: the kill falls in a later round)."""
  proc = subprocess.Popen(args, cwd=REPO, env=env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + timeout
    while not os.path.exists(path):
      assert proc.poll() is None, f"the run ended before {path} existed"
      assert time.time() < deadline, f"no {path} after {timeout} s"
      time.sleep(0.05)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
