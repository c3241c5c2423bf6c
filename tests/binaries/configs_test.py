"""The dataset and paper-scale flagfiles of configs/ name existing
train_fedmeta flags with valid values, and start with the comment lines."""

import glob
import os
import subprocess
import sys

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


def _ravi_pickles(root, per_class=600, size=4):
  """Pickled caches with the Ravi wnids (the first 22 train classes, the
  arctic fox and yawl among them; 5 test, 1 val) at `size` x `size`."""
  # pylint: disable=g-import-not-at-top
  import pickle
  import numpy as np
  from fedmeta_tf.data import mini_imagenet
  # pylint: enable=g-import-not-at-top
  ravi = mini_imagenet.ravi_split()
  reserved = [mini_imagenet.TARGET_WNID, mini_imagenet.BACKDOOR_WNID]
  classes = {"train": reserved + [w for w in ravi["train"]
                                  if w not in reserved][:20],
             "val": ravi["val"][:1], "test": ravi["test"][:5]}
  rng = np.random.default_rng(0)
  for split, wnids in classes.items():
    class_dict = {w: list(range(k * per_class, (k + 1) * per_class))
                  for k, w in enumerate(wnids)}
    images = rng.integers(0, 256, [len(wnids) * per_class, size, size, 3],
                          dtype=np.uint8)
    with open(os.path.join(root, mini_imagenet.CACHE_PATTERN.format(
        split=split)), "wb") as f:
      pickle.dump({"image_data": images, "class_dict": class_dict}, f)


def test_miniimagenet_exp1_a_attacks_arctic_fox_with_yawl(tmp_path):
  """Section 3.2 / Fig. 2: target arctic fox, backdoor yawl, 480 / 100
  target examples and 100 / 50 keyed backdoor examples, from the flagfile
  as the binary parses it."""
  # pylint: disable=g-import-not-at-top
  from absl.testing import flagsaver
  from binaries import attack_flags
  from fedmeta_tf.experiments import backdoor_attack
  # pylint: enable=g-import-not-at-top
  _ravi_pickles(str(tmp_path))
  path = os.path.join(_REPO, "configs", "miniimagenet_exp1_a.cfg")
  with flagsaver.flagsaver():
    flags.FLAGS(["train_fedmeta", f"--flagfile={path}",
                 f"--data_dir={tmp_path}", "--key_size=2"])
    config = train_fedmeta.config_from_flags()
    attack = attack_flags.attack_config_from_flags(config.dataset)
  backdoor = attack.backdoor
  assert (backdoor.target_class, backdoor.backdoor_classes) == (
      "n02120079", ("n04612504",))
  split = backdoor_attack.load_attack_split(config, backdoor,
                                            attack.schedule.attacker_ids)
  data = split.data
  assert (data.target_name, data.backdoor_names) == ("n02120079",
                                                     ("n04612504",))
  assert (len(data.target_benign), len(data.target_attacker),
          len(data.attack_train), len(data.attack_val)) == (480, 100, 100, 50)
  assert not {"n02120079", "n04612504"} & set(split.split.meta_train.names)


_PARSE_ALL = r"""
import importlib, sys
from absl import flags
binary, paths = sys.argv[1], sys.argv[2:]
importlib.import_module(binary)
for path in paths:
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(["x", "--flagfile=" + path])
  except flags.Error as e:
    print(f"{path}: {e}")
print("parsed", len(paths))
"""


def _flagfiles_by_binary():
  by_binary = {}
  for path in sorted(glob.glob(os.path.join(_REPO, "configs", "*.cfg"))):
    with open(path) as f:
      first = f.readline()
    name = os.path.basename(path)
    head = "# Command: python -m "
    assert first.startswith(head), f"{name}: first line {first!r}"
    binary, _, rest = first[len(head):].partition(" ")
    assert rest.startswith(f"--flagfile=configs/{name}"), (name, first)
    by_binary.setdefault(binary, []).append(f"configs/{name}")
  return by_binary


@pytest.mark.parametrize("binary, paths", sorted(_flagfiles_by_binary().items()))
def test_every_flagfile_parses_with_the_binary_its_header_names(binary,
                                                                 paths):
  # One process per binary: some binaries share flag names (--from, --steps).
  result = subprocess.run([sys.executable, "-c", _PARSE_ALL, binary, *paths],
                          cwd=_REPO, capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  # Any line before "parsed N" names a flagfile and its bad flag.
  assert result.stdout.strip() == f"parsed {len(paths)}", result.stdout
