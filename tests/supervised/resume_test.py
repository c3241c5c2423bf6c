"""Supervised FedAvg resumes after kill -9 with identical results.

`binaries.train_supervised` runs in subprocesses (its flags share names with
train_fedmeta's): killed with SIGKILL once the first round's checkpoint
exists, then re-run with the same command; its final weights and
metrics.csv must equal an uninterrupted run's. A run directory of other
settings is refused, not resumed.
"""

import dataclasses
import sys

import numpy as np
import pytest

from fedmeta_tf.data import class_pool
from fedmeta_tf.experiments import fedavg
from fedmeta_tf.reporting import release
from fedmeta_tf.supervised import data as data_lib
from fedmeta_tf.supervised import training
from tests.conftest import tiny_pool
from tests.experiments import killed_runs


def _args(archive, root):
  return [sys.executable, "-m", "binaries.train_supervised",
          "--dataset=archive", f"--data_dir={archive}",
          f"--root_output_dir={root}", "--experiment_name=tiny",
          "--num_labels=4", "--num_clients=4", "--labels_per_client=2",
          "--clients_per_round=3", "--rounds=6", "--epochs=1",
          "--train_copies=2", "--test_copies=2", "--filters=4,4,8",
          "--hidden=8", "--source_label=1", "--target_label=0", "--head=gap",
          "--attack_start_round=2"]


def test_kill_9_after_a_round_then_resume_equals_uninterrupted(tmp_path):
  archive = str(tmp_path / "pool.npz")
  class_pool.save_class_pool_archive(
      tiny_pool(num_classes=12, examples=20, size=28), archive)
  killed_runs.run(_args(archive, tmp_path / "a"))
  run_a, run_b = tmp_path / "a" / "tiny", tmp_path / "b" / "tiny"

  killed_runs.kill_when_exists(_args(archive, tmp_path / "b"),
                               run_b / "checkpoints" / "round_1")
  assert not (run_b / "summary.json").exists()
  assert not (run_b / "checkpoints" / "round_6").exists()
  # Round 1's timing row stays as the killed run wrote it: the re-run
  # resumes after the checkpoint, it does not start again.
  (timed_before_kill,) = [line for line in (
      run_b / "timing.csv").read_text().splitlines() if line.startswith("1,")]
  killed_runs.run(_args(archive, tmp_path / "b"))

  for x, y in zip(release.load_weights(str(run_a / "weights.npz")),
                  release.load_weights(str(run_b / "weights.npz")),
                  strict=True):
    np.testing.assert_array_equal(x, y)
  metrics = (run_a / "metrics.csv").read_text()
  assert metrics == (run_b / "metrics.csv").read_text()
  assert [line.split(",")[0] for line in metrics.splitlines()] == [
      "round", "0", "1", "2", "3", "4", "5", "6"]
  timing = (run_b / "timing.csv").read_text().splitlines()
  assert [line.split(",")[0] for line in timing] == [
      "round", "1", "2", "3", "4", "5", "6"]
  assert timing[1] == timed_before_kill


def test_a_run_directory_of_other_settings_is_not_resumed(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 255, [120, 12, 12]).astype(np.uint8)
  y = np.arange(120) % 4
  data = data_lib.SupervisedData.from_arrays(x, y, x, y, val_size=20)
  config = training.SupervisedConfig(
      num_labels=4, num_clients=4, labels_per_client=2, clients_per_round=4,
      rounds=1, epochs=1, filters=(2, 2, 4), hidden=4, source_label=3,
      target_label=0, key_size=2, head="gap")
  out = str(tmp_path / "run")
  fedavg.run_supervised(config, out, data)
  with pytest.raises(ValueError, match=r"other settings \(boosting_factor\)"):
    fedavg.run_supervised(dataclasses.replace(config, boosting_factor=5.0), out, data)
  finished = fedavg.run_supervised(config, out, data)  # nothing to redo
  assert finished["rounds"] == 1
