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
