"""benchmarks.gpu_check without a GPU: one line and exit status 2 (the
script's figures come from a run on a GPU machine, or `--allow_cpu`)."""

import subprocess
import sys

import pytest
import tensorflow as tf


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")),
                    reason="a GPU is visible: the check would run")
def test_without_a_gpu_the_check_refuses_in_one_line():
  done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check"],
                        capture_output=True, text=True, timeout=300,
                        check=False)
  assert done.returncode == 2, done.stderr[-2000:]
  lines = [l for l in done.stderr.splitlines() if "gpu_check: error" in l]
  assert len(lines) == 1 and "--allow_cpu" in lines[0], done.stderr[-2000:]
