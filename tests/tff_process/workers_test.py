"""Workers die with their parent, even a SIGKILLed one (PR_SET_PDEATHSIG)."""

import os
import signal
import subprocess
import sys
import time
import types

import psutil
import pytest

from fedmeta_tf.tff_process import workers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="PR_SET_PDEATHSIG is Linux's")

_PARENT = """
import subprocess, sys, time
from fedmeta_tf.tff_process import workers
child = subprocess.Popen(["sleep", "600"],
                         preexec_fn=workers.die_with_parent(
                             lambda: open(sys.argv[1], "w").close()))
print(child.pid, flush=True)
time.sleep(600)
"""


def _gone(pid, timeout=10.0):
  deadline = time.time() + timeout
  while time.time() < deadline:
    try:
      if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
        return True
    except psutil.NoSuchProcess:
      return True
    time.sleep(0.05)
  return False


def test_child_dies_with_a_sigkilled_parent(tmp_path):
  marker = tmp_path / "then_ran"
  parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(marker)],
                            stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(
                                os.path.dirname(os.path.abspath(__file__)))))
  child = int(parent.stdout.readline())
  try:
    assert marker.exists()  # `then` (e.g. CPU pinning) still runs
    assert not _gone(child, timeout=0.5)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    assert _gone(child), "the child outlived its SIGKILLed parent"
  finally:
    if not _gone(child, timeout=0):
      os.kill(child, signal.SIGKILL)


def test_popen_of_a_module_is_replaced_once():
  module = types.ModuleType("tff_like")
  module.subprocess = subprocess
  workers.make_workers_die_with_parent(module)
  patched = module.subprocess
  assert issubclass(patched.Popen, subprocess.Popen)
  assert patched.PIPE is subprocess.PIPE  # the rest is subprocess's
  workers.make_workers_die_with_parent(module)
  assert module.subprocess is patched
  with pytest.raises(RuntimeError, match="no longer starts its worker"):
    workers.make_workers_die_with_parent(types.ModuleType("other"))
