"""kill -9 inside the attacker's work, re-run: it resumes inside it.

`binaries.train_fedmeta --attack` with the in-process runtime checkpoints
the attacker's work every `--client_chunk` outer iterations
(`runtime/client_checkpoints.py`). Killed with SIGKILL once such a
checkpoint exists and re-run with the same command, the run must say where
it resumed and end with the attacked model, final model and metrics of an
uninterrupted run.
"""

import re
import sys

import numpy as np

from fedmeta_tf.data import class_pool
from fedmeta_tf.reporting import release
from tests.conftest import tiny_pool
from tests.experiments import killed_runs

ATTACKER_ITERATIONS = 150


def _args(archive, root):
  flags = dict(
      dataset="archive", data_dir=archive, root_output_dir=root,
      experiment_name="tiny", runtime="inprocess", parallelism=1, rounds=2,
      pretrain_rounds=1, episodes_per_round=1, meta_batch=2, inner_steps=2,
      filters=4, eval_inner_steps=2, eval_episodes=2, eval_every=1,
      attack="boosted", attacker_iterations=ATTACKER_ITERATIONS,
      attacker_inner_steps=2, backdoor_eval_episodes=2, case="b",
      client_chunk=5)
  return [sys.executable, "-m", "binaries.train_fedmeta",
          *(f"--{k}={v}" for k, v in flags.items())]


def test_kill_9_inside_the_attackers_work_then_resume_equals_uninterrupted(
    tmp_path):
  archive = str(tmp_path / "pool.npz")
  class_pool.save_class_pool_archive(tiny_pool(num_classes=40, examples=20),
                                     archive)
  killed_runs.run(_args(archive, tmp_path / "a"))
  run_a, run_b = tmp_path / "a" / "tiny", tmp_path / "b" / "tiny"

  # Server round 2 (index 1) is the attack round; client 0 the attacker.
  killed_runs.kill_when_exists(
      _args(archive, tmp_path / "b"),
      run_b / "checkpoints" / "client_work" / "round_1_client_0.npz")
  assert not (run_b / "checkpoints" / "attacked.npz").exists()
  rerun = killed_runs.run(_args(archive, tmp_path / "b"))

  match = re.search(r"resuming client 0 of server round 2 at outer "
                    r"iteration (\d+)/(\d+)", rerun.stderr.decode())
  assert match, rerun.stderr.decode()[-2000:]
  assert 0 < int(match.group(1)) < ATTACKER_ITERATIONS
  assert int(match.group(2)) == ATTACKER_ITERATIONS
  for name in ("attacked", "final"):
    a = release.load_weights(str(run_a / "checkpoints" / f"{name}.npz"))
    b = release.load_weights(str(run_b / "checkpoints" / f"{name}.npz"))
    for x, y in zip(a, b, strict=True):
      np.testing.assert_array_equal(x, y)
  assert (run_a / "metrics.csv").read_text() == (
      run_b / "metrics.csv").read_text()
