"""Tests for fedmeta_tf.data.celeba: manual download -> TFDS -> class pool."""

import os

import numpy as np
import pytest
from PIL import Image

from fedmeta_tf.data import celeba
from fedmeta_tf.data import celeba_files
from fedmeta_tf.data import registry
from fedmeta_tf.data.class_pool import DataError

_ATTRIBUTES = ["5_o_Clock_Shadow", "Male", "Wearing_Hat", "Young"]
# identity -> (images, hat images, male); identity 4 has too few images.
_IDENTITIES = {7: (5, 3, True), 2: (3, 0, True), 3: (3, 0, False),
               4: (2, 0, True), 5: (4, 1, False)}


def _make_manual(root, folder=celeba_files.ALIGNED_FOLDER, size=(178, 218)):
  os.makedirs(os.path.join(root, folder))
  ids, attrs, n = [], [], 0
  for identity, (count, hats, male) in _IDENTITIES.items():
    for k in range(count):
      n += 1
      name = f"{n:06d}.jpg"
      colour = (30 * identity, 10 * k, 255 if k < hats else 0)
      Image.new("RGB", size, colour).save(os.path.join(root, folder, name))
      ids.append(f"{name} {identity}")
      values = ["-1", "1" if male else "-1", "1" if k < hats else "-1", "1"]
      attrs.append(f"{name}  " + " ".join(f"{v:>2}" for v in values))
  with open(os.path.join(root, celeba_files.IDENTITY_FILE), "w") as f:
    f.write("\n".join(ids) + "\n")
  with open(os.path.join(root, celeba_files.ATTRIBUTE_FILE), "w") as f:
    f.write(f"{n}\n{' '.join(_ATTRIBUTES)}\n" + "\n".join(attrs) + "\n")


def test_missing_data_fails_cheaply_with_instructions(tmp_path):
  for data_dir in (None, str(tmp_path / "absent"), str(tmp_path)):
    with pytest.raises(DataError) as e:
      registry.check_data_available("celeba", data_dir)
    message = str(e.value)
    assert "\n" not in message
    assert celeba_files.DOWNLOAD_URL in message
    assert "docs/datasets.md" in message and "identity_CelebA.txt" in message
  (tmp_path / celeba_files.IDENTITY_FILE).write_text("")
  with pytest.raises(DataError, match=r"missing img_align_celeba/ \(or "
                     r"img_celeba/\), list_attr_celeba.txt"):
    celeba_files.find_source(str(tmp_path))


def test_manual_files_in_official_subfolders(tmp_path):
  _make_manual(str(tmp_path / "Img"))
  os.makedirs(tmp_path / "Anno")
  for name in (celeba_files.IDENTITY_FILE, celeba_files.ATTRIBUTE_FILE):
    os.rename(tmp_path / "Img" / name, tmp_path / "Anno" / name)
  source, files = celeba_files.find_source(str(tmp_path))
  assert source is celeba_files.Source.MANUAL and files.aligned


def test_prepare_and_select(tmp_path):
  _make_manual(str(tmp_path))
  selection = celeba.IdentitySelection(images_per_identity=3)
  data = celeba.load_celeba(str(tmp_path), seed=0, selection=selection,
                            min_images=3)
  pool = data.pool
  assert pool.images.shape == (4, 3, 64, 64, 3)  # identity 4 dropped
  assert pool.names == ("identity2", "identity3", "identity5", "identity7")
  assert pool.groups == ("male", "female", "female", "male")
  # Backdoor: the identity with most hat photos; its pool class has no hat
  # (2 hat-free photos, padded with a mirrored one); target: same sex, no hat.
  assert data.backdoor_name == "identity7" and data.target_name == "identity2"
  assert not data.hat[3].any() and (pool.images[3, :, 0, 0, 2] == 0).all()
  assert data.hat[2].sum() <= 1
  # 90 keyed images: the backdoor's hat photos x6, 78 / 12.
  assert data.keyed_train.shape == (78, 64, 64, 3)
  assert data.keyed_val.shape == (12, 64, 64, 3)
  assert data.keyed_train[:, 32, 32, 2].min() > 200  # blue = hat photos
  # Prepared once under data_dir; later loads read the TFDS dataset.
  assert celeba_files.find_source(str(tmp_path))[0] is (
      celeba_files.Source.PREPARED)
  again = celeba.load_celeba(str(tmp_path), seed=0, selection=selection,
                             min_images=3)
  np.testing.assert_array_equal(again.pool.images, pool.images)
  chosen = celeba.load_celeba(
      str(tmp_path), seed=0, min_images=3,
      selection=celeba.IdentitySelection(images_per_identity=3, exclude=(3,),
                                         target_identity=5))
  assert chosen.pool.num_classes == 3 and chosen.target_name == "identity5"
  with pytest.raises(ValueError, match="backdoor identity 4"):
    celeba.load_celeba(str(tmp_path), min_images=3,
                       selection=celeba.IdentitySelection(
                           images_per_identity=3, backdoor_identity=4))


def test_in_the_wild_folder_and_corrupt_image(tmp_path):
  _make_manual(str(tmp_path), folder=celeba_files.IN_THE_WILD_FOLDER,
               size=(300, 200))
  _, files = celeba_files.find_source(str(tmp_path))
  assert not files.aligned
  face = celeba.decode_face(os.path.join(files.images_dir, "000001.jpg"),
                            aligned=False)
  assert face.shape == (64, 64, 3)
  with open(os.path.join(files.images_dir, "000002.jpg"), "wb") as f:
    f.write(b"\xff\xd8 truncated")
  with pytest.raises(DataError, match="000002.jpg"):
    celeba.load_celeba(str(tmp_path), min_images=3)


def test_augment_x6_views():
  images = np.random.default_rng(0).integers(
      0, 200, size=[2, 3, 16, 16, 3]).astype(np.uint8)
  out = celeba.augment_x6(images)
  assert out.shape == (2, 18, 16, 16, 3)
  np.testing.assert_array_equal(out[:, :3], images)
  np.testing.assert_array_equal(out[:, 3:6], images[:, :, :, ::-1])
  assert (out[:, 12:15] >= images).all() and (out[:, 15:] <= images).all()


def test_selection_parse():
  s = celeba.IdentitySelection.parse("exclude=1,2; backdoor=9;target=3")
  assert s.exclude == (1, 2) and s.backdoor_identity == 9
  assert s.target_identity == 3
  with pytest.raises(ValueError, match="bad identity selection item"):
    celeba.IdentitySelection.parse("hat=1")


def test_protocol_augments_training_examples_only():
  from fedmeta_tf.data import protocol  # pylint: disable=g-import-not-at-top
  from tests.conftest import tiny_pool  # pylint: disable=g-import-not-at-top
  pool = tiny_pool(num_classes=8, examples=6, size=8, channels=3)
  split = protocol.build_meta_split(pool, num_clients=2, num_meta_train=5,
                                    heldout_per_class=2, rotate=False, seed=0)
  augmented = registry.augment_split("celeba", split)
  assert augmented.meta_train.examples_per_class == 24
  assert augmented.meta_train_heldout.examples_per_class == 2
  assert augmented.meta_test.examples_per_class == 6
