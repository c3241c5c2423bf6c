"""Tests for fedmeta_tf.data.celeba: manual download -> TFDS -> class pool."""

import os

import numpy as np
import pytest
from PIL import Image

from fedmeta_tf.data import celeba
from fedmeta_tf.data import celeba_files
from fedmeta_tf.data import image_files
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
  with pytest.raises(DataError, match=r"\(missing img_align_celeba/ \(or "
                     r"img_celeba/\)\):"):
    celeba_files.find_source(str(tmp_path))
  # The attribute file is needed for the hat key alone.
  os.makedirs(tmp_path / celeba_files.ALIGNED_FOLDER)
  source, files = celeba_files.find_source(str(tmp_path))
  assert source is celeba_files.Source.MANUAL
  assert files.attribute_file is None


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
  # Its 3 hat photos are kept apart for the keyed sets (blue = hat).
  assert data.hat_photos.shape == (3, 64, 64, 3)
  assert data.hat_photos[:, 32, 32, 2].min() > 200
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
  with pytest.raises(DataError, match=r"corrupt image file .*000002.jpg.*"
                     r"present but cannot be decoded"):
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


def _load(root, **kwargs):
  return celeba.load_celeba(
      str(root), seed=0, min_images=3,
      selection=celeba.IdentitySelection(images_per_identity=3), **kwargs)


def test_identity_file_header_line_is_skipped(tmp_path):
  _make_manual(str(tmp_path))
  path = tmp_path / celeba_files.IDENTITY_FILE
  plain = celeba_files.read_identities(str(path))
  body = path.read_text()
  for header in ("image_id identity\n", "202599\n", "17\nimage_id identity\n"):
    path.write_text(header + body)
    assert celeba_files.read_identities(str(path)) == plain
  path.write_text(body + "000099.jpg seven\n")
  with pytest.raises(DataError, match="line 18 is not '<file> <identity>'"):
    celeba_files.read_identities(str(path))


def test_attribute_csv_equals_txt(tmp_path):
  _make_manual(str(tmp_path))
  txt = tmp_path / celeba_files.ATTRIBUTE_FILE
  lines = txt.read_text().splitlines()
  rows = [",".join(["image_id"] + lines[1].split())]
  rows += [",".join(line.split()) for line in lines[2:]]
  (tmp_path / celeba_files.ATTRIBUTE_CSV).write_text("\n".join(rows) + "\n")
  names = ("Wearing_Hat", "Male")
  from_txt = celeba_files.read_attributes(str(txt), names)
  from_csv = celeba_files.read_attributes(
      str(tmp_path / celeba_files.ATTRIBUTE_CSV), names)
  assert from_csv == from_txt and len(from_txt) == 17
  assert from_txt["000001.jpg"] == (True, True)
  os.remove(txt)
  files = celeba_files.find_manual_files(str(tmp_path))
  assert files.attribute_file.endswith(celeba_files.ATTRIBUTE_CSV)


def test_partial_image_folder_uses_complete_identities(tmp_path, caplog):
  _make_manual(str(tmp_path))
  images = tmp_path / celeba_files.ALIGNED_FOLDER
  os.remove(images / "000007.jpg")  # One of identity 2's 3 images.
  scan = celeba_files.scan_manual(celeba_files.find_manual_files(str(tmp_path)))
  assert scan.missing_files == 1 and sorted(scan.complete) == [3, 4, 5, 7]
  assert celeba_files.partial_line(scan, str(images)) == (
      f"celeba: 4 of 5 identities have all their images under {images} "
      "(1 image files missing); using those")
  with caplog.at_level("WARNING"):
    data = _load(tmp_path)
  assert "4 of 5 identities have all their images" in caplog.text
  assert data.pool.names == ("identity3", "identity5", "identity7")
  assert data.backdoor_name == "identity7"


def test_missing_and_corrupt_images_are_told_apart(tmp_path):
  missing = str(tmp_path / "absent.png")
  with pytest.raises(DataError, match=r"missing image file .*absent.png.* "
                     r"\(not found\)"):
    image_files.decode_image(missing, channels=image_files.Channels.RGB)
  (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
  with pytest.raises(DataError, match=r"corrupt image file .*broken.png.*"
                     r"present but cannot be decoded"):
    image_files.decode_image(str(tmp_path / "broken.png"),
                             channels=image_files.Channels.RGB)


def test_too_few_identities_says_counts_before_preparing(tmp_path):
  _make_manual(str(tmp_path))
  os.remove(tmp_path / celeba_files.ALIGNED_FOLDER / "000007.jpg")
  with pytest.raises(DataError) as e:
    _load(tmp_path, meta_classes=(10, 5))
  assert str(e.value) == (
      "celeba: 3 identities qualify (>= 3 images, all present; 1 image files "
      "listed in identity_CelebA.txt are missing), the protocol needs 15 "
      "(10 meta-training + 5 meta-testing); pass --num_meta_train=... "
      "--num_meta_test=... for a smaller protocol")
  # The paper's protocol, through the registry, with the attack's 2 reserved
  # identities; nothing was prepared.
  with pytest.raises(DataError, match=r"celeba: 0 identities qualify \(>= 30 "
                     r"images, .*needs 2,358 \(2,156 meta-training \+ 200 "
                     r"meta-testing \+ 2 reserved for the attack\); pass "
                     r"--num_meta_train=\.\.\. --num_meta_test=\.\.\."):
    registry.load_dataset("celeba", str(tmp_path), reserved=2)
  # The flags' sizes, through the registry.
  with pytest.raises(DataError, match=r"needs 7 \(4 meta-training \+ 3 "):
    registry.load_dataset("celeba", str(tmp_path), protocol=(
        registry.protocol_for("celeba", num_meta_train=4, num_meta_test=3)))
  assert not celeba_files.is_prepared(str(tmp_path))


def test_prepared_dataset_is_rebuilt_when_manual_files_change(tmp_path,
                                                              caplog):
  _make_manual(str(tmp_path))
  txt = tmp_path / celeba_files.ATTRIBUTE_FILE
  attributes = txt.read_text()
  os.remove(txt)  # Benign training needs no attribute file.
  benign = _load(tmp_path)
  assert benign.backdoor_name is None and len(benign.hat_photos) == 0
  assert benign.pool.groups == ("unknown",) * 4
  assert celeba_files.find_source(str(tmp_path))[0] is (
      celeba_files.Source.PREPARED)
  (tmp_path / celeba_files.ATTRIBUTE_CSV).write_text(
      "image_id," + attributes.splitlines()[1].replace(" ", ",") + "\n" +
      "\n".join(",".join(line.split())
                for line in attributes.splitlines()[2:]) + "\n")
  with caplog.at_level("WARNING"):
    keyed = _load(tmp_path)
  assert "changed since" in caplog.text and "attribute file" in caplog.text
  assert keyed.backdoor_name == "identity7"
  assert keyed.hat_photos[:, 32, 32, 2].min() > 200  # The hat photos.
  caplog.clear()
  with caplog.at_level("WARNING"):
    again = _load(tmp_path)  # Unchanged: read as prepared.
  assert "changed since" not in caplog.text
  np.testing.assert_array_equal(again.pool.images, keyed.pool.images)
  os.remove(tmp_path / celeba_files.ALIGNED_FOLDER / "000007.jpg")
  with caplog.at_level("WARNING"):
    partial = _load(tmp_path)
  assert "images" in caplog.text.split("changed since")[1]
  assert "identity2" not in partial.pool.names


def test_keyed_sets_from_distinct_hat_photos():
  photos = np.stack([np.full([64, 64, 3], 10 * i, np.uint8) for i in range(15)])
  sets = celeba.keyed_sets(photos, seed=0)
  # The paper's 90 = 15 photos x 6: 13 photos for training, 2 for validation.
  assert (sets.train_photos, sets.val_photos, sets.random_crops) == (13, 2, 0)
  assert sets.train.shape == (78, 64, 64, 3) and sets.val.shape == (12, 64,
                                                                     64, 3)
  # Each photo is in one set (its unaugmented view), never in both.
  def holds(images, photo):
    return any((x == photo).all() for x in images)
  in_train = [holds(sets.train, p) for p in photos]
  in_val = [holds(sets.val, p) for p in photos]
  assert sum(in_train) == 13 and sum(in_val) == 2
  assert not any(t and v for t, v in zip(in_train, in_val))
  few = celeba.keyed_sets(photos[:3], seed=0)
  assert (few.train_photos, few.val_photos) == (2, 1)
  assert few.random_crops == (78 - 12) + (12 - 6)
  assert "random crops" in few.describe("identity7")
  assert "from 2 distinct hat photos of identity7" in few.describe("identity7")
  with pytest.raises(DataError, match="at least 2 distinct"):
    celeba.keyed_sets(photos[:1])
