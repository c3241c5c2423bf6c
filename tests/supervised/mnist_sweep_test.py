"""The pruning paper's own data end to end (Section V): train_supervised on an
MNIST fixture in the official IDX layout (test set only, as the CPU-sized
protocol reads it), a sweep over label pairs and key patterns, and
binaries.prune writing the paper's table with its figures beside ours.

The binaries run in subprocesses (train_supervised's flags share names with
train_fedmeta's)."""

import csv
import json
import subprocess
import sys

import pytest

from fedmeta_tf.experiments import sweeps
from fedmeta_tf.supervised import training
from tests.conftest import T10K
from tests.conftest import tiny_test_set

# A few rounds of the paper's MNIST model, shrunk: 2 conv (5x5 valid) + 2 FC.
TINY = ["--dataset=mnist", "--num_clients=10", "--labels_per_client=3",
        "--clients_per_round=10", "--rounds=2", "--epochs=1", "--batch_size=16",
        "--filters=3,4", "--hidden=8", "--kernel_size=5",
        "--conv_padding=valid", "--parallelism=1", "--progress=none"]


def _run(args, expect=0):
  proc = subprocess.run([sys.executable, "-m", *args], capture_output=True,
                        text=True, timeout=600, check=False)
  assert proc.returncode == expect, proc.stdout + proc.stderr
  return proc


def test_members_name_what_varies():
  config = training.SupervisedConfig(dataset="mnist")
  assert [m.name for m in sweeps.members(config)] == [""]
  pairs = sweeps.parse_label_pairs(["9:0", "1:9"])
  assert [m.name for m in sweeps.members(config, pairs)] == [
      "vic9_atk0", "vic1_atk9"]
  both = sweeps.members(config, pairs[:1], [1, 9])
  assert [(m.name, m.key("pixels"), m.key("pair")) for m in both] == [
      ("vic9_atk0_pixels1", 1, (9, 0)), ("vic9_atk0_pixels9", 9, (9, 0))]
  for bad in (["9-1"], ["9:1:2"], ["9:1", "9:1"]):
    with pytest.raises(ValueError, match="--label_pairs"):
      sweeps.parse_label_pairs(bad)


def test_sweep_trains_every_pair_and_prune_writes_the_papers_table(tmp_path):
  data_dir = tiny_test_set(tmp_path / "mnist")
  root = tmp_path / "runs"
  out = _run(["binaries.train_supervised", *TINY, f"--data_dir={data_dir}",
              f"--root_output_dir={root}", "--experiment_name=pairs",
              "--label_pairs=9:0,9:1", "--key_pixels=9"])
  # The t10k-only protocol says what it did, in one line.
  assert "only the official test set" in out.stdout
  assert "160 client training / 20 server validation / 20 test" in out.stdout
  sweep_dir = root / "pairs"
  members = json.loads((sweep_dir / "sweep.json").read_text())["members"]
  assert [m["name"] for m in members] == ["vic9_atk0", "vic9_atk1"]
  for member, target in (("vic9_atk0", 0), ("vic9_atk1", 1)):
    config = json.loads((sweep_dir / member / "config.json").read_text())
    assert (config["source_label"], config["target_label"]) == (9, target)
    assert config["key_pixels"] == 9
    assert config["filters"] == [3, 4] and config["kernel_size"] == 5
    assert (sweep_dir / member / "weights.npz").is_file()

  out = _run(["binaries.prune", f"--from={sweep_dir}", "--prune_step=2",
              "--paper_table=II-ranking", "--progress=none"])
  table = (sweep_dir / "pruning" / "table.md").read_text()
  assert table in out.stdout
  # Our rows and the paper's figures for the same pairs (Table II, ranking
  # vote: 9 -> 0 trained 98.5 / 100, pruned 35 channels 96.2 / 100).
  rows = [l for l in table.splitlines() if l.startswith("| vic")]
  assert len(rows) == 2
  assert "98.5 / 100.0" in rows[0] and "96.2 / 100.0 (35)" in rows[0]
  assert "98.2 / 100.0" in rows[1] and "96.2 / 0.4 (37)" in rows[1]
  assert "paper, all 18 rows" in table
  with open(sweep_dir / "pruning" / "table.csv") as f:
    cells = list(csv.DictReader(f))
  ours = {(c["run"], c["stage"]): c for c in cells}
  for member in ("vic9_atk0", "vic9_atk1"):
    stages = json.loads((sweep_dir / member / "pruning" / "summary.json"
                         ).read_text())["stages"]
    pruned = [s for s in stages if s["stage"] == "pruning"][0]
    cell = ours[(member, "pruning")]
    assert float(cell["attack_success"]) == pytest.approx(
        100 * pruned["attack_success"])
    assert int(float(cell["num"])) == pruned["num"]


def test_an_invalid_run_exits_2_and_writes_nothing(tmp_path):
  data_dir = tiny_test_set(tmp_path / "mnist")
  root = tmp_path / "runs"
  proc = _run(["binaries.train_supervised", *TINY, f"--data_dir={data_dir}",
               f"--root_output_dir={root}", "--num_attackers=4"], expect=2)
  assert "only 3 clients hold source label 9" in proc.stderr
  assert not root.exists()


def test_missing_labels_file_exits_2_and_writes_nothing(tmp_path):
  data_dir = tmp_path / "mnist"
  tiny_test_set(data_dir)
  (data_dir / (T10K[1] + ".gz")).unlink()
  root = tmp_path / "runs"
  proc = _run(["binaries.train_supervised", *TINY, f"--data_dir={data_dir}",
               f"--root_output_dir={root}"], expect=2)
  errors = [l for l in proc.stderr.splitlines() if "error" in l]
  assert len(errors) == 1 and T10K[1] in errors[0], proc.stderr
  assert not root.exists()


def test_extreme_weights_alone_skips_the_pruning_stage(tmp_path):
  """Table III: --prune_neurons=false; a fixed Delta with
  --delta_accuracy_drop=1 (Table I's Delta = 3)."""
  data_dir = tiny_test_set(tmp_path / "mnist")
  root = tmp_path / "runs"
  out = _run(["binaries.train_supervised", *TINY, f"--data_dir={data_dir}",
              f"--root_output_dir={root}", "--experiment_name=one",
              "--key_pixels=1", "--val_size=10"])
  assert "180 client training / 10 server validation / 10 test" in out.stdout
  _run(["binaries.prune", f"--from={root / 'one'}", "--prune_neurons=false",
        "--delta_max=0.5", "--delta_min=0.5", "--delta_accuracy_drop=1",
        "--progress=none"])
  stages = json.loads((root / "one" / "pruning" / "summary.json"
                       ).read_text())["stages"]
  assert [s["stage"] for s in stages] == ["training", "extreme_weights"]
  assert stages[1]["delta"] == 0.5 and stages[1]["num"] > 0
  proc = _run(["binaries.prune", f"--from={root / 'one'}",
               "--output_subdir=t", "--paper_table=I"], expect=2)
  assert "--paper_table=I has no effect with a single run" in proc.stderr
