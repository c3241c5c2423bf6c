"""The bad-input table: one test per row.

Every bad input gives one line on stderr naming the flag or file and what
would be valid, exit status 2, no traceback, and changes nothing already
written (a finished run sits in the same output root and must stay
byte-identical).
"""

import os
import subprocess
import sys

from absl.testing import flagsaver
from PIL import Image
import pytest

from binaries import train_fedmeta
from fedmeta_tf.data import class_pool
from tests.binaries.train_fedmeta_test import REPO
from tests.binaries.train_fedmeta_test import tiny_flags
from tests.conftest import snapshot_files
from tests.conftest import tiny_pool


@pytest.fixture(scope="module")
def previous_run(tmp_path_factory):
  """A finished tiny run and the archive it used."""
  root = tmp_path_factory.mktemp("runs")
  archive = str(root / "pool.npz")
  class_pool.save_class_pool_archive(tiny_pool(num_classes=24, examples=10),
                                     archive)
  with flagsaver.flagsaver(**tiny_flags(archive, root, runtime="inprocess",
                                        rounds=1)):
    train_fedmeta.main(["train_fedmeta"])
  return root, archive


def _assert_usage_error(previous_run, capsys, must_name, **overrides):
  root, archive = previous_run
  before = snapshot_files(root)
  flags = tiny_flags(archive, root, runtime="inprocess", rounds=1)
  flags.update(overrides)
  capsys.readouterr()
  with flagsaver.flagsaver(**flags):
    with pytest.raises(SystemExit) as exit_info:
      train_fedmeta.main(["train_fedmeta"])
  err = capsys.readouterr().err.strip()
  assert exit_info.value.code == 2
  assert len(err.splitlines()) == 1 and "Traceback" not in err, err
  assert must_name in err, err
  assert snapshot_files(root) == before


def test_unknown_dataset(previous_run, capsys):
  _assert_usage_error(previous_run, capsys, "'omniglott'; valid: glyphs",
                      dataset="omniglott")


def test_unknown_aggregator(previous_run, capsys):
  _assert_usage_error(previous_run, capsys, "unknown aggregator 'medain'",
                      aggregator="medain")


def test_ways_larger_than_a_clients_classes(previous_run, capsys):
  _assert_usage_error(previous_run, capsys, "ways (N=50) exceeds", ways=50)


def test_shots_plus_queries_larger_than_examples(previous_run, capsys):
  _assert_usage_error(previous_run, capsys, "eval shots + queries (9+2)",
                      eval_shots=9, eval_queries=2)


def test_training_shots_larger_than_examples(previous_run, capsys):
  _assert_usage_error(previous_run, capsys, "shots (K=12) exceeds", shots=12)


@pytest.mark.parametrize("flag", ["rounds", "num_clients", "inner_steps",
                                  "episodes_per_round", "eval_episodes"])
def test_non_positive_counts(previous_run, capsys, flag):
  _assert_usage_error(previous_run, capsys, f"{flag}", **{flag: 0})


@pytest.mark.parametrize("flag", ["inner_lr", "outer_lr"])
def test_non_positive_learning_rates(previous_run, capsys, flag):
  _assert_usage_error(previous_run, capsys, flag, **{flag: -0.1})


def test_non_positive_boosting_factor(previous_run, capsys):
  # --backdoor_eval_episodes as tiny --eval_episodes: no other refusal. (The
  # attack's lambda may be below 1; it must be positive.)
  _assert_usage_error(previous_run, capsys, "boosting_factor must be positive",
                      attack="boosted", boosting_factor=0.0,
                      backdoor_eval_episodes=2)


def test_batched_meta_batch_in_bfloat16(previous_run, capsys):
  _assert_usage_error(previous_run, capsys,
                      "--meta_batch_mode=batched trains in float32 only",
                      meta_batch_mode="batched", precision="mixed_bfloat16")


def test_missing_data_directory(previous_run, capsys):
  _assert_usage_error(previous_run, capsys, "/no/such/dir",
                      dataset="omniglot", data_dir="/no/such/dir")


def test_unreadable_archive(previous_run, capsys, tmp_path):
  bad = tmp_path / "bad.npz"
  bad.write_bytes(b"this is not an npz file")
  _assert_usage_error(previous_run, capsys, str(bad), data_dir=str(bad))


def test_corrupt_image_is_named_by_path(previous_run, capsys, tmp_path):
  for split in ("images_background", "images_evaluation"):
    for c in range(6):
      folder = (tmp_path / "omniglot" / split / "Alpha" /
                f"character{c + 1:02d}")
      folder.mkdir(parents=True)
      for d in range(20):
        Image.new("1", (105, 105), 1).save(folder / f"{c:04d}_{d + 1:02d}.png")
  chars = tmp_path / "omniglot" / "images_background" / "Alpha"
  corrupt = chars / "character03" / "0002_07.png"
  corrupt.write_bytes(b"\x89PNG garbage")
  _assert_usage_error(previous_run, capsys, str(corrupt), dataset="omniglot",
                      data_dir=str(tmp_path / "omniglot"))


def test_output_directory_of_a_different_experiment(previous_run, capsys):
  _assert_usage_error(previous_run, capsys, "holds a different experiment",
                      inner_steps=3)


def test_misspelled_flag_in_a_flagfile(previous_run, tmp_path):
  root, _ = previous_run
  before = snapshot_files(root)
  flagfile = tmp_path / "bad.cfg"
  flagfile.write_text("--rounds=2\n--raunds=3\n")
  result = subprocess.run(
      [sys.executable, "-m", "binaries.train_fedmeta",
       f"--flagfile={flagfile}", f"--root_output_dir={root}"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  lines = [l for l in result.stderr.splitlines() if "error" in l]
  assert len(lines) == 1 and "raunds" in lines[0], result.stderr
  assert "Traceback" not in result.stderr
  assert snapshot_files(root) == before


def test_delta_outside_zero_one(previous_run, capsys):
  from binaries import defend  # pylint: disable=g-import-not-at-top
  root, _ = previous_run
  before = snapshot_files(root)
  capsys.readouterr()
  with flagsaver.flagsaver(**{"from": str(root / "tiny"), "deltas": ["1.5"]}):
    with pytest.raises(SystemExit) as exit_info:
      defend.main(["defend"])
  err = capsys.readouterr().err.strip()
  assert exit_info.value.code == 2
  assert len(err.splitlines()) == 1 and "Traceback" not in err, err
  assert "delta must be in [0, 1], got 1.5" in err
  assert snapshot_files(root) == before
