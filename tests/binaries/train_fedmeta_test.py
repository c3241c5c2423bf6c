"""Smoke, resume and bad-input tests of binaries.train_fedmeta."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

from absl.testing import flagsaver
import numpy as np
import pytest

from binaries import train_fedmeta
from fedmeta_tf.data import class_pool
from fedmeta_tf.reporting import release
from tests.conftest import tiny_pool

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


@pytest.fixture
def archive(tmp_path):
  path = str(tmp_path / "pool.npz")
  class_pool.save_class_pool_archive(tiny_pool(num_classes=24, examples=10),
                                     path)
  return path


def tiny_flags(archive, root, **overrides):
  values = dict(dataset="archive", data_dir=archive, root_output_dir=str(root),
                experiment_name="tiny", rounds=2, num_clients=4,
                clients_per_round=3, min_updates=2, ways=3, shots=2,
                episodes_per_round=1, meta_batch=2, inner_steps=2,
                inner_batch=4, filters=4, eval_ways=3, eval_shots=2,
                eval_inner_steps=2, eval_episodes=2, eval_every=1)
  values.update(overrides)
  return values


@pytest.mark.parametrize("runtime", ["tff", "inprocess"])
def test_main_writes_the_run_directory(archive, tmp_path, runtime):
  with flagsaver.flagsaver(**tiny_flags(archive, tmp_path, runtime=runtime)):
    train_fedmeta.main(["train_fedmeta"])
  run = tmp_path / "tiny"
  with open(run / "metrics.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["round"] for r in rows] == ["0", "1", "2"]
  assert all(0 <= float(r["meta_test_accuracy"]) <= 1 for r in rows)
  summary = json.loads((run / "summary.json").read_text())
  assert summary["rounds"] == 2
  assert (run / "saved_model" / "saved_model.pb").exists()
  assert (run / "flags.txt").exists() and list((run / "tensorboard").iterdir())


def test_saved_model_serves_in_a_fresh_process(archive, tmp_path):
  with flagsaver.flagsaver(**tiny_flags(archive, tmp_path,
                                        runtime="inprocess", rounds=1)):
    train_fedmeta.main(["train_fedmeta"])
  code = ("import numpy as np, tensorflow as tf\n"
          f"m = tf.saved_model.load({str(tmp_path / 'tiny' / 'saved_model')!r})\n"
          "out = m.signatures['serving_default'](images=tf.zeros([4, 28, 28, 1]))\n"
          "print(out['logits'].shape)\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=120, check=True)
  assert "(4, 3)" in result.stdout


def _cli(archive, root, **overrides):
  args = [sys.executable, "-m", "binaries.train_fedmeta"]
  for key, value in tiny_flags(archive, root, **overrides).items():
    args.append(f"--{key}={value}")
  return args


def _env():
  return dict(os.environ, TF_DETERMINISTIC_OPS="1", TF_CPP_MIN_LOG_LEVEL="2")


def test_kill_9_mid_round_then_resume_equals_uninterrupted(archive, tmp_path):
  overrides = dict(runtime="inprocess", rounds=4, episodes_per_round=6)
  subprocess.run(_cli(archive, tmp_path / "a", **overrides), cwd=REPO,
                 env=_env(), check=True, capture_output=True, timeout=300)

  run_b = tmp_path / "b"
  proc = subprocess.Popen(_cli(archive, run_b, **overrides), cwd=REPO,
                          env=_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  # Kill while round 3 runs: round 2's checkpoint exists, round 3's not.
  while not (run_b / "tiny" / "checkpoints" / "round_2").exists():
    assert time.time() < deadline and proc.poll() is None
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (run_b / "tiny" / "summary.json").exists()
  subprocess.run(_cli(archive, run_b, **overrides), cwd=REPO, env=_env(),
                 check=True, capture_output=True, timeout=300)

  a = release.load_weights(str(tmp_path / "a" / "tiny" / "final_weights.npz"))
  b = release.load_weights(str(run_b / "tiny" / "final_weights.npz"))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert ((tmp_path / "a" / "tiny" / "metrics.csv").read_text() ==
          (run_b / "tiny" / "metrics.csv").read_text())


def test_finished_run_is_not_redone_and_other_flags_are_refused(archive,
                                                                 tmp_path):
  flags = tiny_flags(archive, tmp_path, runtime="inprocess", rounds=1)
  with flagsaver.flagsaver(**flags):
    train_fedmeta.main(["train_fedmeta"])
  metrics = tmp_path / "tiny" / "metrics.csv"
  before = metrics.read_text(), metrics.stat().st_mtime_ns
  with flagsaver.flagsaver(**flags):
    train_fedmeta.main(["train_fedmeta"])
  assert (metrics.read_text(), metrics.stat().st_mtime_ns) == before
  with flagsaver.flagsaver(**dict(flags, inner_lr=0.5)):
    with pytest.raises(SystemExit) as exit_info:
      train_fedmeta.main(["train_fedmeta"])
  assert exit_info.value.code == 2
  assert (metrics.read_text(), metrics.stat().st_mtime_ns) == before
