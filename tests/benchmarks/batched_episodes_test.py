"""benchmarks.batched_episodes: a tiny run prints every setting; bad input
is one line and exit status 2."""

import subprocess
import sys


def _run(*args):
  return subprocess.run([sys.executable, "-m", "benchmarks.batched_episodes",
                         *args], capture_output=True, text=True, timeout=600,
                        check=False)


def test_tiny_run_prints_sequential_and_every_formulation_and_chunk():
  done = _run("--shapes=16x16x1:4", "--episodes=2", "--steps=2",
              "--chunks=1,2", "--repeats=1")
  assert done.returncode == 0, done.stderr[-2000:]
  lines = [l for l in done.stdout.splitlines() if l.startswith("batched,")]
  names = [l.split("steps: ")[1].split(" episode-steps")[0].rsplit(" ", 1)[0]
           .strip() for l in lines]
  assert names == ["sequential", "grouped E=1", "grouped E=2", "loop E=1",
                   "loop E=2"], done.stdout
  assert "1.00x sequential" in lines[0]


def test_chunks_that_do_not_divide_the_episodes_are_refused():
  done = _run("--episodes=10", "--chunks=3")
  assert done.returncode == 2
  errors = [l for l in done.stderr.splitlines() if "error" in l]
  assert len(errors) == 1 and "--chunks" in errors[0], done.stderr[-2000:]
