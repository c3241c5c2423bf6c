"""Tests for fedmeta_tf.data.protocol and class_pool."""

import numpy as np
import pytest

from fedmeta_tf.data import class_pool
from fedmeta_tf.data import protocol
from fedmeta_tf.data import registry
from tests.conftest import tiny_pool


def test_rotations_make_four_classes_of_each():
  pool = tiny_pool(num_classes=3, examples=2)
  rotated = protocol.rotate_classes(pool)
  assert rotated.num_classes == 12
  np.testing.assert_array_equal(rotated.images[3 + 1],
                                np.rot90(pool.images[1], 1, axes=(1, 2)))
  assert rotated.names[4].endswith("@rot90")


def test_meta_split_by_count_is_disjoint_and_seeded():
  pool = tiny_pool(num_classes=20)
  train, test = protocol.split_meta_train_test(pool, num_meta_train=15, seed=3)
  assert train.num_classes == 15 and test.num_classes == 5
  assert not set(train.names) & set(test.names)
  again, _ = protocol.split_meta_train_test(pool, num_meta_train=15, seed=3)
  assert train.names == again.names


def test_meta_split_by_field():
  pool = tiny_pool(num_classes=12)
  train, test = protocol.split_meta_train_test(pool, num_meta_train=None,
                                               seed=0)
  assert train.num_classes == 8 and test.num_classes == 4


def test_held_out_examples_are_disjoint():
  pool = tiny_pool(num_classes=4, examples=8)
  train, heldout = protocol.hold_out_examples(pool, 3, seed=0)
  assert train.examples_per_class == 5 and heldout.examples_per_class == 3
  for c in range(4):
    rows = {a.tobytes() for a in train.images[c]} | {
        a.tobytes() for a in heldout.images[c]}
    assert len(rows) == 8


def test_partition_is_disjoint_balanced_and_complete():
  parts = protocol.partition_classes(10, 4, seed=0)
  sizes = sorted(len(p) for p in parts)
  assert sizes == [2, 2, 3, 3]
  assert sorted(np.concatenate(parts).tolist()) == list(range(10))
  with pytest.raises(ValueError, match="cannot split"):
    protocol.partition_classes(3, 4, seed=0)


def test_build_meta_split_end_to_end():
  split = protocol.build_meta_split(tiny_pool(num_classes=12, examples=8),
                                    num_clients=4, num_meta_train=None,
                                    heldout_per_class=2, rotate=True, seed=0)
  assert split.meta_train.num_classes == 32
  assert split.meta_test.num_classes == 16
  assert split.meta_train.examples_per_class == 6
  assert split.client_pool(0).shape == (8, 6, 28, 28, 1)


def test_archive_round_trip_and_errors(tmp_path):
  pool = tiny_pool(num_classes=3, examples=2)
  path = str(tmp_path / "pool.npz")
  class_pool.save_class_pool_archive(pool, path)
  loaded = class_pool.load_class_pool_archive(path)
  np.testing.assert_array_equal(loaded.images, pool.images)
  assert loaded.names == pool.names
  with pytest.raises(class_pool.DataError, match="not found"):
    class_pool.load_class_pool_archive(str(tmp_path / "missing.npz"))
  (tmp_path / "bad.npz").write_bytes(b"not a zip")
  with pytest.raises(class_pool.DataError, match="unreadable"):
    class_pool.load_class_pool_archive(str(tmp_path / "bad.npz"))
  np.savez(tmp_path / "noimages.npz", x=np.zeros(3))
  with pytest.raises(class_pool.DataError, match="no 'images'"):
    class_pool.load_class_pool_archive(str(tmp_path / "noimages.npz"))


def test_real_omniglot_archive_loads(omniglot_archive):
  pool = class_pool.load_class_pool_archive(omniglot_archive)
  assert pool.images.shape == (1623, 20, 28, 28, 1)
  assert (pool.split == 0).sum() == 964
  assert pool.names[0].startswith(pool.groups[0])


def test_protocol_sizes_reach_the_split():
  """--num_meta_train / --num_meta_test / --examples_per_class /
  --heldout_per_class as `registry.Protocol` sizes (Sections 3.2-3.3)."""
  pool = tiny_pool(num_classes=12, examples=8)  # own split: 8 / 4 classes
  proto = registry.protocol_for("archive", num_meta_train=5, num_meta_test=3,
                                examples_per_class=6, heldout_per_class=1)
  split = protocol.split_by_protocol(pool, proto, dataset="archive",
                                     num_clients=2, seed=0)
  assert split.meta_train.num_classes == 5
  assert split.meta_test.num_classes == 3
  assert split.meta_train.examples_per_class == 5
  assert split.meta_train_heldout.examples_per_class == 1
  assert split.meta_test.examples_per_class == 6
  assert set(split.meta_train.names) <= set(pool.names[:8])  # background
  # Drawn at random from all classes (Omniglot's kind), x4 rotations.
  omni = registry.protocol_for("omniglot", num_meta_train=7, num_meta_test=2)
  split = protocol.split_by_protocol(pool, omni, dataset="omniglot",
                                     num_clients=2, seed=0)
  assert split.meta_train.num_classes == 28 and split.meta_test.num_classes == 8
  # Unset sizes: the paper's.
  assert registry.protocol_for("celeba") == registry.PROTOCOLS[
      registry.DatasetName.CELEBA]
  assert registry.Protocol.from_json(None, "celeba").num_meta_test == 200


def test_too_few_classes_is_one_line_naming_the_flags():
  pool = tiny_pool(num_classes=77, examples=4)
  with pytest.raises(class_pool.DataError) as e:
    protocol.split_by_protocol(pool, registry.protocol_for("omniglot"),
                               dataset="omniglot", num_clients=4, seed=0)
  assert str(e.value) == (
      "omniglot: 77 classes qualify, the protocol needs at least 1,201 "
      "(1,200 meta-training + 1 meta-testing); pass --num_meta_train=... "
      "--num_meta_test=... for a smaller protocol")
  with pytest.raises(class_pool.DataError, match=r"^omniglot: 82 classes "
                     r"qualify, the protocol needs at least 1,206 \(1,200 "
                     r"meta-training \+ 1 meta-testing \+ 5 reserved"):
    protocol.split_by_protocol(pool, registry.protocol_for("omniglot"),
                               dataset="omniglot", num_clients=4, seed=0,
                               reserved=5)
  with pytest.raises(class_pool.DataError, match=r"^archive: its own split has "
                     r"8 meta-training classes, the protocol needs 9; pass "
                     r"--num_meta_train"):
    protocol.split_by_protocol(
        tiny_pool(), registry.protocol_for("archive", num_meta_train=9),
        dataset="archive", num_clients=4, seed=0)
  with pytest.raises(class_pool.DataError, match=r"have 8 examples, the "
                     r"protocol takes 9; pass --examples_per_class=8"):
    protocol.split_by_protocol(
        tiny_pool(), registry.protocol_for("archive", examples_per_class=9),
        dataset="archive", num_clients=4, seed=0)
  with pytest.raises(ValueError, match="--heldout_per_class"):
    protocol.split_by_protocol(
        tiny_pool(), registry.protocol_for("archive", heldout_per_class=8),
        dataset="archive", num_clients=4, seed=0)
