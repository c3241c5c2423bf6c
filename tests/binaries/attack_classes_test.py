"""--target_class and --backdoor_classes choose the attack's classes by name
(main paper, Section 3.2, Fig. 2: the arctic fox and the yawl); a name that
is not in the class pool is one line on stderr and exit status 2."""

import dataclasses
import json
import os

from absl.testing import flagsaver
import pytest

from binaries import attack_flags
from binaries import train_fedmeta
from fedmeta_tf.data import class_pool
from fedmeta_tf.experiments import attack_config
from fedmeta_tf.experiments import backdoor_attack
from tests.binaries.train_fedmeta_test import tiny_flags
from tests.conftest import tiny_pool

_ATTACK = dict(attack="boosted", pretrain_rounds=0, attacker_iterations=1,
               attacker_inner_steps=1, backdoor_eval_episodes=1,
               backdoor_benign_examples=4, attack_train_examples=2,
               attack_val_examples=2, eval_episodes=1)


@pytest.fixture(name="archive")
def _archive(tmp_path):
  """A class-pool archive with Omniglot's names (`Alphabet/characterNN`)."""
  pool = tiny_pool(num_classes=24, examples=10)
  pool = dataclasses.replace(pool, names=tuple(
      f"{'Alpha' if i < 12 else 'Gamma'}/character{i % 12 + 1:02d}"
      for i in range(24)))
  path = str(tmp_path / "pool.npz")
  class_pool.save_class_pool_archive(pool, path)
  return path


def test_classes_by_name_reach_the_attack_and_its_json(archive, tmp_path):
  with flagsaver.flagsaver(**tiny_flags(
      archive, tmp_path, **_ATTACK, target_class="Gamma/character03",
      backdoor_classes=["Alpha/character07", "Alpha/character01"])):
    config = train_fedmeta.config_from_flags()
    attack = attack_flags.attack_config_from_flags(config.dataset)
  assert attack.backdoor.num_backdoor_classes == 2  # as many as named
  data = backdoor_attack.load_attack_split(config, attack.backdoor,
                                           (0,)).data
  assert data.target_name == "Gamma/character03"
  assert data.backdoor_names == ("Alpha/character07", "Alpha/character01")
  # experiment.json round-trips the names; a run written before them loads
  # with every class drawn, as it was.
  saved = json.loads(json.dumps({
      "training": attack_config.to_jsonable(config),
      "attack": attack_config.to_jsonable(attack)}))
  assert backdoor_attack.configs_from_json(saved) == (config, attack)
  for field in ("target_class", "backdoor_classes", "attacker_target_examples"):
    del saved["attack"]["backdoor"][field]
  old = backdoor_attack.configs_from_json(saved)[1].backdoor
  assert (old.target_class, old.backdoor_classes,
          old.attacker_target_examples) == (None, (), None)


def test_more_names_than_backdoor_classes_is_refused(archive, tmp_path):
  with flagsaver.flagsaver(**tiny_flags(
      archive, tmp_path, **_ATTACK, num_backdoor_classes=1,
      backdoor_classes=["Alpha/character07", "Alpha/character01"])):
    with pytest.raises(ValueError, match="--num_backdoor_classes=1 is fewer"):
      attack_flags.attack_config_from_flags("archive")


def test_a_name_not_in_the_pool_exits_2_naming_valid_ones(archive, tmp_path,
                                                          capsys):
  with flagsaver.flagsaver(**tiny_flags(archive, tmp_path, **_ATTACK,
                                        target_class="Gamma/character3")):
    with pytest.raises(SystemExit) as exit_info:
      train_fedmeta.main(["train_fedmeta"])
  err = capsys.readouterr().err.strip()
  assert exit_info.value.code == 2
  assert len(err.splitlines()) == 1 and "Traceback" not in err, err
  assert "--target_class: 'Gamma/character3' is not a class" in err, err
  assert "Gamma/character03" in err, err
  assert not os.path.exists(tmp_path / "tiny")  # nothing written
