"""Tests for fedmeta_tf.data.mini_imagenet: the three layouts in circulation."""

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from fedmeta_tf.data import mini_imagenet
from fedmeta_tf.data import protocol
from fedmeta_tf.data import registry
from fedmeta_tf.data.class_pool import DataError

_CLASSES = {"train": ["n02120079", "n04612504", "n01"],
            "val": ["n02"], "test": ["n03", "n04"]}
_PER_CLASS = 4


def _image(class_index, example):
  """84x84 RGB, constant colour per class, brightness per example."""
  rgb = np.array([(40 * class_index) % 256, 20 * example, 200], np.uint8)
  return np.broadcast_to(rgb, (84, 84, 3)).copy()


def _all_classes():
  for split in mini_imagenet.SPLITS:
    for wnid in _CLASSES[split]:
      yield split, wnid


def _make_folders(root):
  for k, (split, wnid) in enumerate(_all_classes()):
    os.makedirs(os.path.join(root, split, wnid))
    for e in range(_PER_CLASS):
      Image.fromarray(_image(k, e)).save(
          os.path.join(root, split, wnid, f"{wnid}_{e:04d}.png"))


def _make_csv(root):
  os.makedirs(os.path.join(root, "images"))
  for split in mini_imagenet.SPLITS:
    with open(os.path.join(root, f"{split}.csv"), "w") as f:
      f.write("filename,label\n")
      for k, (s, wnid) in enumerate(_all_classes()):
        if s != split:
          continue
        for e in range(_PER_CLASS):
          name = f"{wnid}{e:08d}.png"
          # Originals are bigger than 84x84: the loader resizes.
          Image.fromarray(_image(k, e)).resize((100, 120)).save(
              os.path.join(root, "images", name))
          f.write(f"{name},{wnid}\n")


def _make_pickles(root):
  for split in mini_imagenet.SPLITS:
    images, class_dict = [], {}
    for k, (s, wnid) in enumerate(_all_classes()):
      if s != split:
        continue
      class_dict[wnid] = list(range(len(images), len(images) + _PER_CLASS))
      images += [_image(k, e) for e in range(_PER_CLASS)]
    with open(os.path.join(
        root, mini_imagenet.CACHE_PATTERN.format(split=split)), "wb") as f:
      pickle.dump({"image_data": np.stack(images), "class_dict": class_dict}, f)


@pytest.mark.parametrize("make, layout", [
    (_make_folders, mini_imagenet.Layout.CLASS_FOLDERS),
    (_make_csv, mini_imagenet.Layout.CSV),
    (_make_pickles, mini_imagenet.Layout.PICKLE)])
def test_layouts_give_the_same_pool(tmp_path, make, layout):
  make(str(tmp_path))
  assert mini_imagenet.find_layout(str(tmp_path)) is layout
  pool = registry.load_dataset("miniimagenet", str(tmp_path))
  assert pool.images.shape == (6, _PER_CLASS, 84, 84, 3)
  assert pool.names[:2] == ("n01", "n02120079")  # sorted within a split
  assert list(pool.split) == [0, 0, 0, -1, 1, 1]
  assert pool.groups == ("train",) * 3 + ("val",) + ("test",) * 2
  fox = pool.names.index(mini_imagenet.TARGET_WNID)
  np.testing.assert_allclose(pool.images[fox, 1, 40, 40], _image(0, 1)[0, 0],
                             atol=2)
  assert "train 3 classes (paper 64)" in mini_imagenet.describe_layout(pool)


def test_protocol_uses_the_ravi_split(tmp_path):
  _make_pickles(str(tmp_path))
  pool = mini_imagenet.load_mini_imagenet(str(tmp_path))
  proto = registry.PROTOCOLS[registry.DatasetName.MINIIMAGENET]
  split = protocol.build_meta_split(
      pool, num_clients=1, num_meta_train=proto.num_meta_train,
      heldout_per_class=2, rotate=proto.rotate, seed=0)
  assert set(split.meta_train.names) == set(_CLASSES["train"])
  assert set(split.meta_test.names) == set(_CLASSES["test"])  # val unused


def test_pickle_with_code_is_refused(tmp_path):
  _make_pickles(str(tmp_path))

  class Evil:
    def __reduce__(self):
      return (os.system, ("echo pwned",))

  with open(tmp_path / "mini-imagenet-cache-val.pkl", "wb") as f:
    pickle.dump({"image_data": Evil(), "class_dict": {}}, f)
  with pytest.raises(DataError, match="refusing global .*system"):
    mini_imagenet.load_mini_imagenet(str(tmp_path))


def test_corrupt_image_and_bad_csv_are_named(tmp_path):
  _make_csv(str(tmp_path))
  with open(tmp_path / "images" / "n0300000001.png", "wb") as f:
    f.write(b"not a png")
  with pytest.raises(DataError, match="n0300000001.png"):
    mini_imagenet.load_mini_imagenet(str(tmp_path))
  (tmp_path / "val.csv").write_text("file,class\nx.png,n02\n")
  with pytest.raises(DataError, match="filename,label"):
    mini_imagenet.load_mini_imagenet(str(tmp_path))


def test_missing_data_message(tmp_path):
  with pytest.raises(DataError) as e:
    registry.check_data_available("miniimagenet", str(tmp_path))
  assert "train.csv" in str(e.value) and "docs/datasets.md" in str(e.value)
  assert "mini-imagenet-cache" in str(e.value)


def _make_by_image(root, folders=("train", "val"), size=8):
  """The 100 Ravi classes in every folder of `folders`, one image each
  (public copies split each class's 600 images 500 / 100 by image)."""
  wnids = [w for s in mini_imagenet.SPLITS
           for w in mini_imagenet.ravi_split()[s]]
  for f, folder in enumerate(folders):
    for k, wnid in enumerate(wnids):
      os.makedirs(os.path.join(root, folder, wnid))
      Image.fromarray(_image(k, f)[:size, :size]).save(
          os.path.join(root, folder, wnid, f"{wnid}_{f}.png"))


def test_the_ravi_split_ships_with_the_package():
  split = mini_imagenet.ravi_split()
  assert {s: len(w) for s, w in split.items()} == mini_imagenet.CLASS_COUNTS
  assert len({w for s in split.values() for w in s}) == 100
  assert {mini_imagenet.TARGET_WNID, mini_imagenet.BACKDOOR_WNID} <= set(
      split["train"])


@pytest.mark.parametrize("folders", [("train", "val"),
                                     ("train", "val", "test")])
def test_by_image_layout_is_resplit_into_the_ravi_classes(tmp_path, caplog,
                                                           folders):
  _make_by_image(str(tmp_path), folders)
  assert mini_imagenet.find_layout(str(tmp_path)) is (
      mini_imagenet.Layout.BY_IMAGE)
  with caplog.at_level("INFO", logger="absl"):
    pool = mini_imagenet.load_mini_imagenet(str(tmp_path), image_size=8)
  assert "split by image" in caplog.text
  assert pool.images.shape == (100, len(folders), 8, 8, 3)  # merged per class
  assert mini_imagenet.describe_layout(pool) == (
      "train 64 classes (paper 64), val 16 classes (paper 16), "
      "test 20 classes (paper 20)")
  for split, code in mini_imagenet.SPLIT_CODES.items():
    assert {n for n, c in zip(pool.names, pool.split) if c == code} == set(
        mini_imagenet.ravi_split()[split])


def test_a_class_in_two_places_is_named(tmp_path):
  """Class folders and CSVs name the class and both places it is in."""
  _make_folders(str(tmp_path / "folders"))
  os.makedirs(tmp_path / "folders" / "test" / "n01")
  Image.fromarray(_image(0, 0)).save(tmp_path / "folders" / "test" / "n01" /
                                     "x.png")
  with pytest.raises(DataError, match="class n01 appears in both train/ and "
                     "test/"):
    mini_imagenet.load_mini_imagenet(str(tmp_path / "folders"))
  _make_csv(str(tmp_path / "csv"))
  with open(tmp_path / "csv" / "val.csv", "a") as f:
    f.write("n0300000000.png,n03\n")
  with pytest.raises(DataError, match="class n03 appears in both val.csv and "
                     "test.csv"):
    mini_imagenet.load_mini_imagenet(str(tmp_path / "csv"))


def test_by_image_layout_with_other_classes_in_test_is_named(tmp_path):
  _make_by_image(str(tmp_path))
  os.makedirs(tmp_path / "test" / "n99999999")
  with pytest.raises(DataError) as e:
    mini_imagenet.find_layout(str(tmp_path))
  message = str(e.value)
  first = mini_imagenet.ravi_split()["train"][0]
  assert f"class {first} appears in both train/ and val/" in message
  assert "split by image, every folder must hold the same classes" in message
