"""The dataset and paper-scale flagfiles of configs/ name existing
train_fedmeta flags with valid values, and start with the comment lines."""

import glob
import os

from absl import flags
import pytest

from binaries import train_fedmeta  # pylint: disable=unused-import

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_CONFIGS = sorted(
    [os.path.join(_REPO, "configs", f) for f in (
        "omniglot.cfg", "miniimagenet.cfg", "celeba.cfg", "celeba_m8.cfg",
        "celeba_k15.cfg", "miniimagenet_exp3e_median.cfg")] +
    glob.glob(os.path.join(_REPO, "configs", "*_exp1_*.cfg")))


@pytest.mark.parametrize("path", _CONFIGS, ids=os.path.basename)
def test_flagfile_parses(path):
  with open(path) as f:
    lines = f.read().splitlines()
  comments = [l for l in lines if l.startswith("#")]
  text = "\n".join(comments)
  assert lines[0].startswith(
      "# Command: python -m binaries.train_fedmeta --flagfile=configs/")
  for heading in ("Reproduces:", "Expected runtime", "Paper's numbers"):
    assert heading in text
  for line in lines:
    if not line.startswith("--"):
      assert not line.strip() or line.startswith("#"), line
      continue
    name, _, value = line[2:].partition("=")
    assert name in flags.FLAGS, f"{os.path.basename(path)}: --{name}"
    flags.FLAGS[name]._parse(value)  # pylint: disable=protected-access


def test_celeba_flagfile_is_the_papers_setup():
  with open(os.path.join(_REPO, "configs", "celeba.cfg")) as f:
    values = dict(l[2:].split("=", 1) for l in f.read().splitlines()
                  if l.startswith("--"))
  expected = {"shots": "12", "ways": "5", "episodes_per_round": "500",
              "meta_batch": "5", "outer_lr": "1.0", "inner_steps": "12",
              "eval_inner_steps": "50", "inner_batch": "6",
              "inner_lr": "0.0004", "num_clients": "4", "eval_episodes": "50"}
  assert {k: values[k] for k in expected} == expected
