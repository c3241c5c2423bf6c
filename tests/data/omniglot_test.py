"""Tests for fedmeta_tf.data.omniglot: the three accepted forms."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from fedmeta_tf.data import class_pool
from fedmeta_tf.data import omniglot
from fedmeta_tf.data import registry
from fedmeta_tf.data.class_pool import DataError

# Official layout: split / alphabet / characterNN / XXXX_YY.png.
_ALPHABETS = {"images_background": {"Alpha": 2, "Beta": 1},
              "images_evaluation": {"Gamma": 2}}
_DRAWERS = 3


def _glyph(char_index, drawer):
  """105x105 black ink on white, mode '1', distinct per (char, drawer)."""
  image = np.full([105, 105], 255, np.uint8)
  top = 5 + 15 * char_index
  image[top:top + 10, 10 + 20 * drawer:40 + 20 * drawer] = 0
  return Image.fromarray(image).convert("1")


def _make_official(root):
  char_index = 0
  for split, alphabets in _ALPHABETS.items():
    for alphabet, count in alphabets.items():
      for c in range(count):
        folder = os.path.join(root, split, alphabet, f"character{c + 1:02d}")
        os.makedirs(folder)
        # Written out of drawer order: the loader must sort by _YY.
        for d in reversed(range(_DRAWERS)):
          _glyph(char_index, d).save(
              os.path.join(folder, f"{1000 + char_index:04d}_{d + 1:02d}.png"))
        char_index += 1


def test_official_folders(tmp_path):
  _make_official(str(tmp_path))
  source, _ = omniglot.find_source(str(tmp_path))
  assert source is omniglot.OmniglotSource.FOLDERS
  pool = omniglot.load_omniglot(str(tmp_path))
  assert pool.images.shape == (5, _DRAWERS, 28, 28, 1)
  assert pool.names == ("Alpha/character01", "Alpha/character02",
                        "Beta/character01", "Gamma/character01",
                        "Gamma/character02")
  assert pool.groups[2] == "Beta" and list(pool.split) == [0, 0, 0, 1, 1]
  # Ink is high on a zero background, and drawers are in _YY order: the bar
  # of drawer d starts at x = 10 + 20 d (105 px) -> ~ (10 + 20 d) * 28 / 105.
  image = pool.images[0, :, :, :, 0].astype(int)
  assert image[:, 0, 0].max() == 0 and image.max() > 200
  columns = [np.flatnonzero(image[d].max(axis=0) > 128)[0]
             for d in range(_DRAWERS)]
  assert columns == sorted(columns) and columns[0] < columns[1]


def test_official_folders_under_python_subdir(tmp_path):
  _make_official(str(tmp_path / "python"))
  assert omniglot.load_omniglot(str(tmp_path)).num_classes == 5


def test_bad_file_name_and_corrupt_image(tmp_path):
  _make_official(str(tmp_path))
  folder = tmp_path / "images_background" / "Alpha" / "character01"
  (folder / "1000_01.png").write_bytes(b"garbage")
  with pytest.raises(DataError, match="1000_01.png"):
    omniglot.load_omniglot(str(tmp_path))
  (folder / "1000_01.png").unlink()
  with pytest.raises(DataError, match="different number of images"):
    omniglot.load_omniglot(str(tmp_path))
  (folder / "notes.png").write_bytes(b"")
  with pytest.raises(DataError, match="XXXX_YY.png"):
    omniglot.load_omniglot(str(tmp_path))


def test_archive_file_and_dir(tmp_path):
  pool = class_pool.make_class_pool(
      np.zeros([3, 4, 28, 28], np.uint8), names=["a", "b", "c"],
      split=[0, 0, 1])
  path = str(tmp_path / omniglot.ARCHIVE_NAME)
  class_pool.save_class_pool_archive(pool, path)
  assert omniglot.load_omniglot(str(tmp_path)).names == ("a", "b", "c")
  assert omniglot.load_omniglot(path).num_classes == 3
  assert registry.load_dataset("omniglot", path).num_classes == 3


def test_missing_data_message_lists_forms_and_docs(tmp_path):
  for data_dir in (None, str(tmp_path / "nope"), str(tmp_path)):
    with pytest.raises(DataError) as e:
      registry.check_data_available("omniglot", data_dir)
    message = str(e.value)
    assert "\n" not in message and "docs/datasets.md" in message
    assert "images_background" in message and "omniglot_28.npz" in message


def test_tfds_prepared_dataset(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  version_dir = tmp_path / "omniglot" / "3.0.0"
  version_dir.mkdir(parents=True)
  (version_dir / "dataset_info.json").write_text(json.dumps(
      {"name": "omniglot", "version": "3.0.0"}))
  assert omniglot.find_source(str(tmp_path))[0] is omniglot.OmniglotSource.TFDS
  # 2 train characters, 1 test character, 2 drawers each; RGB black on white.
  def as_dataset(self, split, **kwargs):
    del self, kwargs
    chars = [(0, 0), (0, 1)] if split == "train" else [(1, 0)]
    examples = {"image": [], "alphabet": [], "alphabet_char_id": [],
                "label": []}
    for alphabet, char in chars:
      for drawer in range(2):
        glyph = np.asarray(_glyph(alphabet * 2 + char, drawer).convert("RGB"))
        examples["image"].append(glyph)
        examples["alphabet"].append(alphabet)
        examples["alphabet_char_id"].append(char)
        examples["label"].append(alphabet * 2 + char)
    return tf.data.Dataset.from_tensor_slices(
        {k: np.asarray(v) for k, v in examples.items()})
  with tfds.testing.mock_data(as_dataset_fn=as_dataset,
                              data_dir=str(tmp_path)):
    pool = omniglot.load_omniglot(str(tmp_path))
  assert pool.images.shape == (3, 2, 28, 28, 1)
  assert list(pool.split) == [0, 0, 1]
  assert pool.names[1].endswith("/character02")
  assert pool.images[:, :, 0, 0].max() == 0 and pool.images.max() > 200


def test_real_archive_protocol_counts(omniglot_archive):
  from fedmeta_tf.data import describe  # pylint: disable=g-import-not-at-top
  pool = omniglot.load_omniglot(os.path.dirname(omniglot_archive))
  counts = describe.protocol_counts(pool, registry.DatasetName.OMNIGLOT,
                                    num_clients=4, seed=0)
  assert counts.pool_classes == 1623
  assert counts.meta_train_classes_before_rotation == 1200
  assert counts.meta_train_classes == 4800
  assert counts.heldout_examples == 5 and counts.meta_train_examples == 15
  assert counts.meta_test_classes == 423  # 418 once the attack reserves 5
  assert counts.client_classes == (1200,) * 4
