"""benchmarks.evaluation_loop: a tiny run prints every formulation in both
precisions with its ratio; bad input is one line and exit status 2."""

import re
import subprocess
import sys


def _run(*args):
  return subprocess.run([sys.executable, "-m", "benchmarks.evaluation_loop",
                         *args], capture_output=True, text=True, timeout=600,
                        check=False)


def test_tiny_run_prints_every_setting():
  done = _run("--episodes=3", "--steps=2", "--repeats=1", "--parallelism=2")
  assert done.returncode == 0, done.stderr[-2000:]
  assert "3 episodes x 2 tasks x 2 steps, 2 streams" in done.stdout
  settings = re.findall(r"^  (\w+) +(\w+) +[\d.]+ s +[\d.]+ episode-steps/s"
                        r" +[\d.]+x sequential float32$", done.stdout,
                        re.MULTILINE)
  assert settings == [(f, p) for p in ("float32", "mixed_bfloat16")
                      for f in ("sequential", "grouped", "loop", "patches")
                      ], done.stdout
  assert "1.00x sequential float32" in done.stdout.splitlines()[-8]


def test_bad_settings_are_refused_in_one_line():
  done = _run("--steps=0")
  assert done.returncode == 2
  errors = [l for l in done.stderr.splitlines() if "error" in l]
  assert len(errors) == 1 and "--steps" in errors[0], done.stderr[-2000:]
