"""Smoke tests: describe_data, and the fast missing-data failure of
train_fedmeta (binaries/data_preflight.py).

The binaries run as subprocesses: their flags (--dataset, --data_dir, ...)
clash with train_fedmeta's when imported into one pytest process. Neither
imports TensorFlow, so each run takes about a second.
"""

import os
import subprocess
import sys
import time

import numpy as np

from binaries import data_preflight
from fedmeta_tf.data import class_pool

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _describe(*args):
  return subprocess.run(
      [sys.executable, "-m", "binaries.describe_data", *args], cwd=_REPO,
      capture_output=True, text=True, timeout=120, check=False)


def test_describe_data_on_an_omniglot_like_archive(tmp_path):
  rng = np.random.default_rng(0)
  pool = class_pool.make_class_pool(
      rng.integers(0, 255, size=[40, 20, 28, 28], dtype=np.uint8),
      split=[0] * 25 + [1] * 15)
  path = str(tmp_path / "omniglot_28.npz")
  class_pool.save_class_pool_archive(pool, path)
  # 40 classes cannot hold the paper's 1200 meta-train classes: clear error.
  result = _describe("--dataset=omniglot", f"--data_dir={tmp_path}")
  assert result.returncode == 2
  assert ("omniglot: 40 classes qualify, the protocol needs at least 1,206 "
          "(1,200 meta-training + 1 meta-testing + 5 reserved for the attack); "
          "pass --num_meta_train=") in result.stderr
  result = _describe("--dataset=archive", f"--data_dir={path}",
                     "--reserve_backdoor_classes=0", "--num_clients=2")
  assert result.returncode == 0, result.stderr[-2000:]
  out = result.stdout
  assert "pool: 40 classes x 20 examples, image 28x28x1" in out
  assert "meta-train: 25 classes" in out and "meta-test: 15 classes" in out
  assert "split among 2 clients: [13, 12] classes" in out


def test_describe_data_real_omniglot_matches_paper(omniglot_archive):
  result = _describe("--dataset=omniglot",
                     f"--data_dir={os.path.dirname(omniglot_archive)}")
  assert result.returncode == 0, result.stderr[-2000:]
  out = result.stdout
  for line in ("pool: 1623 classes (paper 1623)",
               "reserved for the attack (target + backdoor): 5 (paper 5)",
               "meta-train: 1200 classes (paper 1200), x4 rotations",
               "held out per class: 5 (paper 5)",
               "meta-test: 418 classes (paper 418)"):
    assert line in out


def test_preflight_reads_flagfiles(tmp_path):
  flagfile = tmp_path / "x.cfg"
  flagfile.write_text("# comment\n--dataset=celeba\n--data_dir=/nonexistent\n")
  message = data_preflight.data_error([f"--flagfile={flagfile}"],
                                      default_dataset="glyphs")
  assert "celeba" in message and "/nonexistent" in message
  # A later --data_dir wins; glyphs needs nothing; bad names are left alone.
  assert data_preflight.data_error(
      [f"--flagfile={flagfile}", "--dataset=glyphs"],
      default_dataset="glyphs") is None
  assert data_preflight.data_error(["--dataset", "nope"],
                                   default_dataset="glyphs") is None


def test_celeba_config_without_data_fails_fast(tmp_path):
  start = time.time()
  result = subprocess.run(
      [sys.executable, "-m", "binaries.train_fedmeta",
       "--flagfile=configs/celeba.cfg", f"--data_dir={tmp_path}",
       f"--root_output_dir={tmp_path}"],
      cwd=_REPO, capture_output=True, text=True, timeout=60, check=False)
  elapsed = time.time() - start
  assert result.returncode == 2, result.stderr[-2000:]
  assert "mmlab.ie.cuhk.edu.hk" in result.stderr
  assert "docs/datasets.md" in result.stderr
  assert elapsed < 10
