"""train_fedmeta's protocol sizes (main paper, Sections 3.2-3.3) as flags.

--num_meta_train / --num_meta_test / --examples_per_class /
--heldout_per_class reach the split and the saved experiment; a pool too
small for the protocol is refused in one line (exit 2, nothing written).
"""

import os

from absl.testing import flagsaver
import pytest

from binaries import train_fedmeta
from fedmeta_tf.data import class_pool
from fedmeta_tf.experiments import attack_config
from fedmeta_tf.experiments import backdoor_attack
from fedmeta_tf.experiments import training
from tests.binaries.train_fedmeta_test import tiny_flags
from tests.conftest import tiny_pool


@pytest.fixture(name="omniglot_77")
def fixture_omniglot_77(tmp_path):
  """An Omniglot archive of 77 classes: too few for 1200 + the rest."""
  path = str(tmp_path / "omniglot.npz")
  class_pool.save_class_pool_archive(tiny_pool(num_classes=77, examples=20),
                                     path)
  return path


def test_too_few_classes_exit_2_one_line_nothing_written(omniglot_77, tmp_path,
                                                         capsys):
  root = tmp_path / "runs"
  with flagsaver.flagsaver(**tiny_flags(omniglot_77, root, dataset="omniglot",
                                        runtime="inprocess")):
    with pytest.raises(SystemExit) as exit_info:
      train_fedmeta.main(["train_fedmeta"])
  err = capsys.readouterr().err.strip()
  assert exit_info.value.code == 2
  assert err.endswith(
      "error: omniglot: 77 classes qualify, the protocol needs at least 1,201 "
      "(1,200 meta-training + 1 meta-testing); pass --num_meta_train=... "
      "--num_meta_test=... for a smaller protocol"), err
  assert len(err.splitlines()) == 1
  assert not os.path.exists(root)


def test_flags_reach_the_split(omniglot_77, tmp_path):
  with flagsaver.flagsaver(**tiny_flags(
      omniglot_77, tmp_path, dataset="omniglot", num_meta_train=50,
      num_meta_test=20, examples_per_class=12, heldout_per_class=2)):
    config = train_fedmeta.config_from_flags()
  split = training.load_split(config)
  assert split.meta_train.num_classes == 50 * 4  # x4 rotations
  assert split.meta_test.num_classes == 20 * 4
  assert split.meta_train.examples_per_class == 10
  assert split.meta_train_heldout.examples_per_class == 2
  # Saved with the experiment and read back (finetune, defend,
  # --pretrained_from); experiments saved before the sizes were flags read
  # back with the paper's.
  saved = {"training": attack_config.to_jsonable(config),
           "attack": attack_config.to_jsonable(
               backdoor_attack.AttackConfig())}
  again, _ = backdoor_attack.configs_from_json(saved)
  assert again.protocol == config.protocol
  del saved["training"]["protocol"]
  old, _ = backdoor_attack.configs_from_json(saved)
  assert old.protocol.num_meta_train == 1200
  assert old.protocol.examples_per_class is None
