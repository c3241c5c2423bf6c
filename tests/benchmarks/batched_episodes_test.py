"""benchmarks.batched_episodes: a tiny run prints every setting of both
parts with its ratio and FLOP fraction; bad input is one line and exit
status 2."""

import re
import subprocess
import sys


def _run(*args):
  return subprocess.run([sys.executable, "-m", "benchmarks.batched_episodes",
                         *args], capture_output=True, text=True, timeout=600,
                        check=False)


def _names(lines):
  return [re.search(r"steps: (.*?) +[\d.]+ episode-steps/s", l).group(1)
          for l in lines]


def test_tiny_run_prints_every_setting_of_both_parts():
  done = _run("--shapes=16x16x1:4", "--iterations=1", "--episodes=2",
              "--steps=2", "--chunks=1,2", "--repeats=1", "--matmul_size=64")
  assert done.returncode == 0, done.stderr[-2000:]
  assert "reference: float32 matmul 64x64" in done.stdout
  meta = [l for l in done.stdout.splitlines() if l.startswith("meta-batch,")]
  assert _names(meta) == ["sequential float32", "sequential mixed_bfloat16",
                          "batched float32"], done.stdout
  evaluation = [l for l in done.stdout.splitlines()
                if l.startswith("evaluation,")]
  assert _names(evaluation) == [
      "sequential float32", "sequential mixed_bfloat16",
      "grouped E=1 float32", "grouped E=2 float32", "loop E=1 float32",
      "loop E=2 float32", "patches E=1 float32", "patches E=2 float32"
  ], done.stdout
  for lines in (meta, evaluation):
    assert "1.00x sequential float32" in lines[0]
    assert all(re.search(r"\d+% of matmul$", l) for l in lines), lines


def test_bad_settings_are_refused_in_one_line():
  for args in (["--episodes=10", "--chunks=3"], ["--parts=training"]):
    done = _run(*args)
    assert done.returncode == 2
    errors = [l for l in done.stderr.splitlines() if "error" in l]
    assert len(errors) == 1 and args[-1].split("=")[0] in errors[0], (
        done.stderr[-2000:])
