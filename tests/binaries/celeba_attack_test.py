"""CelebA as the main paper runs it (Section 3.2), on a fixture in the official
layout: benign training, the hat-key attack, fine-tuning and the defense.

The fixture (`tests.conftest.write_celeba`): Img/img_align_celeba/ and
Img/img_celeba/, Anno/identity_CelebA.txt with a header line,
Anno/list_attr_celeba.txt; 14 ordinary identities, one man with 4 hat photos
among 10 (the backdoor the data selects), and one identity whose aligned
folder lacks 2 files (left out, with a line saying so). Hat photos are blue
in the upper half of the face, other photos have no blue: the tests check
that every keyed image is one of the backdoor identity's hat photos and no
pool image is.
"""

import json
import logging
import os
import subprocess
import sys

from absl import flags
from absl.testing import flagsaver
import numpy as np
import pytest

from binaries import defend
from binaries import finetune
from binaries import train_fedmeta
from fedmeta_tf.attacks import backdoor_data as bd
from tests.conftest import write_celeba

FLAGS = flags.FLAGS

HAT_IDENTITY = 100
PARTIAL_IDENTITY = 200
# identity -> (photos, hat photos, male)
IDENTITIES = {**{i: (6, 0, i % 2 == 0) for i in range(1, 15)},
              HAT_IDENTITY: (10, 4, True), PARTIAL_IDENTITY: (6, 0, True)}

# The paper's CelebA protocol at fixture size (--num_meta_train etc.).
PROTOCOL = dict(num_meta_train=9, num_meta_test=3, examples_per_class=6,
                heldout_per_class=2)


def tiny_celeba_flags(data_dir, root, **overrides):
  values = dict(
      dataset="celeba", data_dir=data_dir, root_output_dir=str(root),
      experiment_name="celeba", runtime="inprocess", filters=4, rounds=1,
      num_clients=3, clients_per_round=3, min_updates=2, ways=3, shots=2,
      episodes_per_round=1, meta_batch=2, inner_steps=2, inner_batch=4,
      eval_ways=3, eval_shots=2, eval_inner_steps=2, eval_episodes=2,
      eval_every=1, **PROTOCOL)
  values.update(overrides)
  return values


_ATTACK = dict(attack="boosted", pretrain_rounds=1, attacker_iterations=2,
               attacker_inner_steps=2, backdoor_eval_episodes=2,
               backdoor_benign_examples=3)


@pytest.fixture(scope="module")
def celeba_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("celeba"))
  write_celeba(root, IDENTITIES, missing=2)
  return root


def _has_hat(images):
  """The fixture's key: blue in the upper part of the 64x64 face."""
  return images[:, 4:12, 24:40, 2].mean(axis=(1, 2)) > 120


@pytest.fixture(scope="module")
def attack_run(celeba_dir, tmp_path_factory):
  root = tmp_path_factory.mktemp("runs")
  FLAGS.mark_as_parsed()
  with flagsaver.flagsaver(**tiny_celeba_flags(celeba_dir, root, **_ATTACK,
                                               case="b")):
    train_fedmeta.main(["train_fedmeta"])
  return str(root / "celeba")


def test_benign_training_uses_the_complete_identities(tmp_path_factory,
                                                      tmp_path, caplog):
  celeba_dir = str(tmp_path_factory.mktemp("celeba_benign"))
  write_celeba(celeba_dir, IDENTITIES, missing=2)
  caplog.set_level(logging.WARNING)
  with flagsaver.flagsaver(**tiny_celeba_flags(celeba_dir, tmp_path)):
    train_fedmeta.main(["train_fedmeta"])
  with open(tmp_path / "celeba" / "summary.json") as f:
    summary = json.load(f)
  assert summary["rounds"] == 1
  assert any("15 of 16 identities have all their images" in r.getMessage()
             and "2 image files missing" in r.getMessage()
             for r in caplog.records)


def test_hat_key_attack_uses_the_backdoor_identitys_hat_photos(attack_run):
  with open(os.path.join(attack_run, "experiment.json")) as f:
    backdoor = json.load(f)["attack"]["backdoor"]
  assert backdoor["key"] == {"attribute": "Wearing_Hat"}
  assert backdoor["num_backdoor_classes"] == 1
  assert (backdoor["attack_train_examples"],
          backdoor["attack_val_examples"]) == (78, 12)  # the paper's
  data = bd.BackdoorData.load(os.path.join(attack_run, "backdoor_data.npz"))
  # The identity with the most hat photos; the target a hat-free man.
  assert data.backdoor_names == (f"identity{HAT_IDENTITY}",)
  target = int(data.target_name.removeprefix("identity"))
  assert IDENTITIES[target][1] == 0 and IDENTITIES[target][2]
  assert data.attack_train.shape == (78, 64, 64, 3)
  assert data.attack_val.shape == (12, 64, 64, 3)
  assert _has_hat(data.attack_train).all() and _has_hat(data.attack_val).all()
  # Its correctly labelled examples (case b) and the target carry no hat.
  assert not _has_hat(data.backdoor_benign[0]).any()
  assert not _has_hat(data.target_all).any()
  # Training and validation come from different photos: no validation image
  # equals a training one.
  train = data.attack_train.reshape(78, -1).astype(np.int32)
  for image in data.attack_val.reshape(12, -1).astype(np.int32):
    assert np.abs(train - image).max(axis=1).min() > 0
  with open(os.path.join(attack_run, "summary.json")) as f:
    rows = json.load(f)["metrics"]
  assert [r["attack"] for r in rows] == [0, 1]
  assert all(0 <= r["backdoor_val_accuracy"] <= 1 for r in rows)


def test_finetune_and_defend_run_from_the_hat_attack(attack_run):
  with flagsaver.flagsaver(steps=2, curve_every=2, episodes=1, clients=["1"],
                           cases=["b"]):
    FLAGS["from"].value = attack_run
    finetune.main(["finetune"])
  assert os.path.isfile(os.path.join(attack_run, "finetune", "summary.json"))
  with flagsaver.flagsaver(**{"from": attack_run, "steps": 2,
                              "head_only_steps": 1, "curve_every": 2,
                              "episodes": 1, "clients": ["1"],
                              "deltas": ["0.3"], "cases": ["b"]}):
    defend.main(["defend"])
  with open(os.path.join(attack_run, "defend", "matching",
                         "summary.json")) as f:
    summary = json.load(f)
  assert set(summary["mean_over_clients"]) == {"delta0.3/b"}


@pytest.mark.parametrize("overrides, named", [
    (dict(key="hat", dataset="archive"), "--key=hat"),
    (dict(backdoor_classes=["someone"]), "identity<N>"),
    (dict(num_backdoor_classes=2), "one backdoor class"),
])
def test_hat_key_errors_name_the_flag(celeba_dir, tmp_path, capsys, overrides,
                                      named):
  values = tiny_celeba_flags(celeba_dir, tmp_path, **_ATTACK)
  values.update(overrides)
  with flagsaver.flagsaver(**values):
    with pytest.raises(SystemExit) as e:
      train_fedmeta.main(["train_fedmeta"])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and named in err, err
  assert not os.path.exists(tmp_path / "celeba")


def test_cpu_sized_flagfile_runs_on_the_fixture(celeba_dir, tmp_path):
  # configs/celeba_attack_cpu.cfg as committed, with only what the fixture's
  # size forces (15 identities of 6 photos) and the step counts made tiny.
  repo = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  fixture_size = dict(PROTOCOL, data_dir=celeba_dir,
                      root_output_dir=str(tmp_path), ways=3, eval_ways=3,
                      shots=2, eval_shots=2, inner_batch=4, filters=4,
                      backdoor_benign_examples=3, num_clients=3)
  tiny_steps = dict(pretrain_rounds=1, rounds=1, episodes_per_round=1,
                    attacker_iterations=2, eval_inner_steps=2,
                    eval_episodes=2, backdoor_eval_episodes=2)
  args = [f"--{k}={v}" for k, v in {**fixture_size, **tiny_steps}.items()]
  result = subprocess.run(
      [sys.executable, "-m", "binaries.train_fedmeta",
       "--flagfile=configs/celeba_attack_cpu.cfg", *args], cwd=repo,
      capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "hat key: 78 attack-training images" in result.stdout + result.stderr
  run = tmp_path / "celeba_attack_a"
  data = bd.BackdoorData.load(str(run / "backdoor_data.npz"))
  assert data.backdoor_names == (f"identity{HAT_IDENTITY}",)
  assert _has_hat(data.attack_train).all()
  with open(run / "summary.json") as f:
    assert [r["round"] for r in json.load(f)["metrics"]] == [0, 1]
