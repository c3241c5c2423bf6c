"""Tests for fedmeta_tf.attacks.keys and fedmeta_tf.attacks.backdoor_data."""

import dataclasses

import numpy as np
import pytest

from fedmeta_tf.attacks import backdoor_data as bd
from fedmeta_tf.attacks import keys
from fedmeta_tf.data import protocol
from fedmeta_tf.data.class_pool import DataError
from tests.conftest import tiny_pool


def test_stamp_key_sets_exactly_the_pattern_pixels():
  key = keys.StampKey(shape=keys.KeyShape.SQUARE, size=3,
                      position=keys.KeyPosition.BOTTOM_RIGHT, margin=1,
                      value=200)
  images = np.zeros([2, 10, 10, 1], np.uint8)
  keyed = key.stamp(images)
  assert (keyed[:, 6:9, 6:9] == 200).all()
  assert keyed.sum() == 2 * 9 * 200
  assert images.sum() == 0  # the input is not modified
  frame = keys.StampKey(shape=keys.KeyShape.FRAME, size=3,
                        position=keys.KeyPosition.TOP_LEFT, margin=0)
  assert frame.stamp(images)[0, 1, 1, 0] == 0
  assert frame.stamp(images)[0, 0, 2, 0] == 255


def test_stamp_key_rejects_a_key_that_does_not_fit():
  with pytest.raises(ValueError, match="does not fit"):
    keys.StampKey(size=9, margin=2).stamp(np.zeros([1, 8, 8, 1], np.uint8))


def test_semantic_key_takes_the_datasets_keyed_images():
  pool = tiny_pool(num_classes=10, examples=12)
  _, reserved = bd.reserve_classes(pool, num_backdoor_classes=1, seed=0)
  config = bd.BackdoorConfig(num_backdoor_classes=1, benign_examples=4,
                             key=keys.SemanticKey(), case=bd.Case.B)
  keyed = (np.full([7, 28, 28, 1], 200, np.uint8),
           np.full([3, 28, 28, 1], 100, np.uint8))
  data = bd.build_backdoor_data(reserved, config, seed=0, keyed=keyed)
  np.testing.assert_array_equal(data.attack_train, keyed[0])
  np.testing.assert_array_equal(data.attack_val, keyed[1])
  # Its correctly labelled examples are the class's own, unedited.
  own = {x.tobytes() for x in reserved.images[1]}
  assert data.backdoor_benign.shape == (1, 4, 28, 28, 1)
  assert all(x.tobytes() in own for x in data.backdoor_benign[0])
  with pytest.raises(ValueError, match="needs its keyed images"):
    bd.build_backdoor_data(reserved, config, seed=0)
  with pytest.raises(ValueError, match="one backdoor class"):
    bd.BackdoorConfig(num_backdoor_classes=2, key=keys.SemanticKey())


def test_reserved_classes_leave_the_protocol_and_sets_are_disjoint():
  pool = tiny_pool(num_classes=30, examples=20)
  rest, reserved = bd.reserve_classes(pool, num_backdoor_classes=4, seed=0)
  assert reserved.num_classes == 5 and rest.num_classes == 25
  assert not set(reserved.names) & set(rest.names)
  assert set(reserved.split) == {0}  # drawn from the meta-training side
  data = bd.build_backdoor_data(reserved, bd.BackdoorConfig(), seed=0)
  assert data.target_all.shape == (20, 28, 28, 1)
  assert len(data.target_benign) == 10 and len(data.target_attacker) == 10
  assert data.backdoor_benign.shape == (4, 10, 28, 28, 1)
  assert len(data.attack_train) == 20 and len(data.attack_val) == 20
  key = keys.StampKey()
  r, c = key.corner(28, 28)
  assert (data.attack_train[:, r:r + 4, c:c + 4] == 255).all()
  # Benign, attack-training and attack-validation examples are different
  # examples of the backdoor classes (compare away from the key).
  def flat(x):
    return {a[:20].tobytes() for a in x.reshape(-1, 28, 28)}
  benign = flat(data.backdoor_benign)
  assert not benign & flat(data.attack_train)
  assert not flat(data.attack_train) & flat(data.attack_val)


def test_cases_decide_what_benign_clients_meta_train_on():
  pool = tiny_pool(num_classes=30, examples=20)
  rest, reserved = bd.reserve_classes(pool, num_backdoor_classes=4, seed=0)
  data = bd.build_backdoor_data(reserved, bd.BackdoorConfig(), seed=0)
  split = protocol.build_meta_split(rest, num_clients=4, num_meta_train=None,
                                    heldout_per_class=5, rotate=False, seed=0)
  for case, extra in ((bd.Case.A, 1), (bd.Case.B, 5), (bd.Case.C, 5)):
    pools = bd.make_client_pools(split, data, case, attacker_ids={0})
    assert pools[0].shape[0] == len(split.client_classes[0])
    assert pools[1].shape[0] == len(split.client_classes[1]) + extra
    assert pools[1].shape[1] == split.meta_train.examples_per_class
  pools = bd.make_client_pools(split, data, bd.Case.B, attacker_ids={0})
  np.testing.assert_array_equal(pools[2][-4, :10], data.backdoor_benign[0])


def test_backdoor_data_round_trips_through_npz(tmp_path):
  pool = tiny_pool(num_classes=10, examples=20)
  _, reserved = bd.reserve_classes(pool, num_backdoor_classes=2, seed=1)
  data = bd.build_backdoor_data(reserved, bd.BackdoorConfig(
      num_backdoor_classes=2), seed=0)
  data.save(str(tmp_path / "d.npz"))
  loaded = bd.BackdoorData.load(str(tmp_path / "d.npz"))
  np.testing.assert_array_equal(loaded.attack_val, data.attack_val)
  assert loaded.backdoor_names == data.backdoor_names


def test_too_few_examples_is_a_clear_error():
  pool = tiny_pool(num_classes=10, examples=12)
  _, reserved = bd.reserve_classes(pool, num_backdoor_classes=2, seed=0)
  with pytest.raises(ValueError, match=r"\(20, case \(b\)\) exceed the 12"):
    bd.build_backdoor_data(reserved, bd.BackdoorConfig(
        num_backdoor_classes=2, case=bd.Case.B), seed=0)
  # Case (a): no benign client sees a backdoor example; the 2 its keyed
  # examples leave are all it keeps.
  data = bd.build_backdoor_data(
      reserved, bd.BackdoorConfig(num_backdoor_classes=2), seed=0)
  assert data.backdoor_benign.shape[:2] == (2, 2)
  with pytest.raises(ValueError, match=r"benign_examples \(10\) \+ the "
                     r"attacker's target examples \(3\) exceed the 12"):
    bd.build_backdoor_data(reserved, bd.BackdoorConfig(
        num_backdoor_classes=2, attacker_target_examples=3), seed=0)


def _named_pool():
  """Omniglot-style names (`Alphabet/characterNN`, as `omniglot` gives)."""
  pool = tiny_pool(num_classes=12, examples=20)
  return dataclasses.replace(pool, names=tuple(
      f"{'Alpha' if i < 6 else 'Gamma'}/character{i % 6 + 1:02d}"
      for i in range(12)))


def test_classes_named_are_reserved_and_the_rest_drawn():
  pool = _named_pool()
  rest, reserved = bd.reserve_classes(
      pool, num_backdoor_classes=3, seed=0, target_class="Gamma/character05",
      backdoor_classes=["Alpha/character02", "Gamma/character06"])
  assert reserved.names[:3] == ("Gamma/character05", "Alpha/character02",
                                "Gamma/character06")
  assert reserved.num_classes == 4 and rest.num_classes == 8
  assert reserved.split[3] == 0  # the one drawn: the meta-training side
  assert not set(reserved.names) & set(rest.names)
  # Naming only some classes still draws the others from the seed.
  _, drawn = bd.reserve_classes(pool, num_backdoor_classes=1, seed=0,
                                backdoor_classes=["Alpha/character02"])
  assert drawn.names[1] == "Alpha/character02"
  assert drawn.names[0] != "Alpha/character02"


def test_a_name_not_in_the_pool_says_which_names_are():
  with pytest.raises(DataError) as e:
    bd.reserve_classes(_named_pool(), num_backdoor_classes=1, seed=0,
                       target_class="Gamma/character5")
  message = str(e.value)
  assert message.startswith("--target_class: 'Gamma/character5' is not a "
                            "class of this dataset (12 classes"), message
  assert "Gamma/character05" in message and "\n" not in message
  with pytest.raises(DataError, match="--backdoor_classes: 'yawl'"):
    bd.reserve_classes(_named_pool(), num_backdoor_classes=1, seed=0,
                       backdoor_classes=["yawl"])
  with pytest.raises(ValueError, match="named twice"):
    bd.BackdoorConfig(num_backdoor_classes=1, target_class="a",
                      backdoor_classes=("a",))
  with pytest.raises(ValueError, match="2 backdoor classes named"):
    bd.BackdoorConfig(num_backdoor_classes=1, backdoor_classes=("a", "b"))


def test_the_mini_imagenet_counts_of_the_paper():
  """Section 3.2: target 480 benign + 100 attacker; backdoor 100 + 50 keyed."""
  pool = tiny_pool(num_classes=6, examples=600, size=4)
  _, reserved = bd.reserve_classes(pool, num_backdoor_classes=1, seed=0)
  config = bd.BackdoorConfig(
      num_backdoor_classes=1, benign_examples=480, attacker_target_examples=100,
      attack_train_examples=100, attack_val_examples=50,
      key=keys.StampKey(size=2))
  data = bd.build_backdoor_data(reserved, config, seed=0)
  assert (len(data.target_benign), len(data.target_attacker)) == (480, 100)
  assert (len(data.attack_train), len(data.attack_val)) == (100, 50)
  assert not ({t.tobytes() for t in data.target_benign} &
              {t.tobytes() for t in data.target_attacker})
  # Cases (b) and (c) would give the yawl's 480 to benign clients too.
  with pytest.raises(ValueError, match=r"\(630, case \(b\)\) exceed the 600"):
    bd.build_backdoor_data(reserved, dataclasses.replace(config,
                                                         case=bd.Case.B),
                           seed=0)
