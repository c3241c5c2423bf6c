"""Defaults a user expects: data in data/<dataset> unless --data_dir is
given, a run directory named after the flagfile or the dataset."""

import json
import os
import subprocess
import sys

from absl.testing import flagsaver
import pytest

from binaries import common
from binaries import data_preflight
from binaries import train_fedmeta
from fedmeta_tf.data import class_pool
from fedmeta_tf.data import omniglot
from tests.binaries.train_fedmeta_test import REPO
from tests.binaries.train_fedmeta_test import tiny_flags
from tests.conftest import tiny_pool


@pytest.mark.parametrize("dataset, data_dir, expected", [
    ("omniglot", None, os.path.join("data", "omniglot")),
    ("miniimagenet", "", os.path.join("data", "miniimagenet")),
    ("celeba", None, os.path.join("data", "celeba")),
    ("omniglot", "/elsewhere", "/elsewhere"),
    ("glyphs", None, None),  # embedded; its cache has its own default
    ("archive", None, None)])  # one file, which must be named
def test_data_dir_defaults_to_data_slash_dataset(dataset, data_dir, expected):
  assert data_preflight.resolve_data_dir(dataset, data_dir) == expected


def test_binaries_read_data_slash_dataset(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  message = data_preflight.data_error(["--dataset=omniglot"],
                                      default_dataset="glyphs")
  assert "'data/omniglot' does not exist" in message
  os.makedirs("data/omniglot")
  class_pool.save_class_pool_archive(
      tiny_pool(), os.path.join("data", "omniglot", omniglot.ARCHIVE_NAME))
  assert data_preflight.data_error(["--dataset=omniglot"],
                                   default_dataset="glyphs") is None
  with flagsaver.flagsaver(dataset="omniglot", data_dir=None):
    assert train_fedmeta.config_from_flags().data_dir == "data/omniglot"
  with flagsaver.flagsaver(dataset="omniglot", data_dir="/x"):
    assert train_fedmeta.config_from_flags().data_dir == "/x"


def test_flagfiles_do_not_name_a_data_dir():
  """configs/ read data/<dataset> (or the --data_dir the user adds)."""
  for name in os.listdir(os.path.join(REPO, "configs")):
    with open(os.path.join(REPO, "configs", name)) as f:
      assert not [l for l in f if l.startswith("--data_dir")], name


def test_experiment_name_defaults(monkeypatch):
  name_flag = train_fedmeta._EXPERIMENT_NAME  # pylint: disable=protected-access
  monkeypatch.setattr(common, "_command_line_flagfiles", [])
  with flagsaver.flagsaver(experiment_name=None):
    assert common.resolve_experiment_name(name_flag, "omniglot") == "omniglot"
    assert name_flag.value == "omniglot"  # what flags.json records
  monkeypatch.setattr(common, "_command_line_flagfiles",
                      ["a.cfg", "configs/omniglot_cpu.cfg"])
  with flagsaver.flagsaver(experiment_name=None):
    assert common.resolve_experiment_name(name_flag,
                                          "omniglot") == "omniglot_cpu"
  with flagsaver.flagsaver(experiment_name="mine"):
    assert common.resolve_experiment_name(name_flag, "omniglot") == "mine"
  assert common._flagfiles(  # pylint: disable=protected-access
      ["--flagfile=a.cfg", "--x=1", "--flagfile", "b.cfg", "-flagfile=c"]) == [
          "a.cfg", "b.cfg", "c"]


def test_run_directory_is_named_after_the_flagfile(tmp_path):
  archive = str(tmp_path / "pool.npz")
  class_pool.save_class_pool_archive(tiny_pool(num_classes=24, examples=10),
                                     archive)
  values = tiny_flags(archive, tmp_path / "runs", runtime="inprocess",
                      rounds=1)
  del values["experiment_name"]
  flagfile = tmp_path / "my_run.cfg"
  flagfile.write_text("".join(f"--{k}={v}\n" for k, v in values.items()))
  result = subprocess.run(
      [sys.executable, "-m", "binaries.train_fedmeta",
       f"--flagfile={flagfile}"], cwd=REPO, capture_output=True, text=True,
      timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  run = tmp_path / "runs" / "my_run"
  assert (run / "summary.json").exists()
  # Recorded, so that re-running flags.txt writes to the same directory.
  assert json.loads((run / "flags.json").read_text())[
      "experiment_name"] == "my_run"
  assert "--experiment_name=my_run" in (run / "flags.txt").read_text()


def test_run_directory_is_named_after_the_dataset(tmp_path, monkeypatch):
  monkeypatch.setattr(common, "_command_line_flagfiles", [])
  archive = str(tmp_path / "pool.npz")
  class_pool.save_class_pool_archive(tiny_pool(num_classes=24, examples=10),
                                     archive)
  values = tiny_flags(archive, tmp_path, runtime="inprocess", rounds=1)
  values["experiment_name"] = None
  with flagsaver.flagsaver(**values):
    train_fedmeta.main(["train_fedmeta"])
  assert (tmp_path / "archive" / "summary.json").exists()
