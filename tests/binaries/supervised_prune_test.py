"""Smoke tests of binaries.train_supervised and binaries.prune.

They run as subprocesses: train_supervised's flags (--dataset, --rounds,
--attack, ...) share names with train_fedmeta's, so both binaries cannot be
imported into one pytest process.
"""

import csv
import json
import os
import subprocess
import sys

import pytest

from fedmeta_tf.data import class_pool
from tests.conftest import tiny_pool

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _run(*args):
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("sup")
  archive = str(root / "pool.npz")
  class_pool.save_class_pool_archive(
      tiny_pool(num_classes=12, examples=20, size=28), archive)
  result = _run("binaries.train_supervised", "--dataset=archive",
                f"--data_dir={archive}", f"--root_output_dir={root}",
                "--experiment_name=tiny", "--num_labels=4", "--num_clients=4",
                "--labels_per_client=2", "--clients_per_round=3",
                "--rounds=2", "--epochs=1", "--train_copies=2",
                "--test_copies=2", "--filters=4,4,8", "--hidden=8",
                "--source_label=1", "--target_label=0", "--head=gap")
  assert result.returncode == 0, result.stderr[-3000:]
  return os.path.join(str(root), "tiny")


def test_train_supervised_writes_metrics_and_weights(trained_run):
  for name in ("config.json", "weights.npz", "metrics.csv", "summary.json",
               "flags.txt"):
    assert os.path.isfile(os.path.join(trained_run, name)), name
  with open(os.path.join(trained_run, "metrics.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [r["round"] for r in rows] == ["0", "1", "2"]
  assert {"test_accuracy", "attack_success"} <= set(rows[0])
  with open(os.path.join(trained_run, "summary.json")) as f:
    summary = json.load(f)
  assert len(summary["attackers"]) == 1


def test_prune_reports_every_stage(trained_run):
  result = _run("binaries.prune", f"--from={trained_run}", "--prune_step=2",
                "--delta_max=3", "--delta_step=1", "--fine_tune_rounds=1",
                "--vote=majority")
  assert result.returncode == 0, result.stderr[-3000:]
  out = os.path.join(trained_run, "pruning")
  for name in ("stages.csv", "stages.md", "pruning_curve.csv",
               "delta_curve.csv", "delta_curve_after_fine_tune.csv",
               "pruning.png", "summary.json", "weights.npz"):
    assert os.path.isfile(os.path.join(out, name)), name
  with open(os.path.join(out, "stages.csv")) as f:
    stages = [r["stage"] for r in csv.DictReader(f)]
  assert stages == ["training", "pruning", "extreme_weights", "fine_tuning",
                    "fine_tuning+extreme_weights"]
  assert "| pruning |" in result.stdout


def test_prune_bad_run_dir_is_a_one_line_error(tmp_path):
  result = _run("binaries.prune", f"--from={tmp_path}")
  assert result.returncode == 2
  assert "not a supervised run directory" in result.stderr.strip().splitlines()[-1]
