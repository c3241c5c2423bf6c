"""Tests for fedmeta_tf.data.image_files."""

import numpy as np
import pytest
from PIL import Image

from fedmeta_tf.data import image_files
from fedmeta_tf.data.class_pool import DataError


def test_decode_inverts_resizes_and_keeps_channel_axis(tmp_path):
  path = str(tmp_path / "a.png")
  array = np.full([105, 105], 255, np.uint8)
  array[40:60, :] = 0  # a black bar on white
  Image.fromarray(array).convert("1").save(path)
  out = image_files.decode_image(path, channels=image_files.Channels.GRAY,
                                 size=28, invert=True)
  assert out.shape == (28, 28, 1) and out.dtype == np.uint8
  assert out[14, 14, 0] == 255 and out[0, 0, 0] == 0


def test_rgb_crop_then_resize(tmp_path):
  path = str(tmp_path / "a.jpg")
  array = np.zeros([218, 178, 3], np.uint8)
  array[:20] = 255  # cropped away by the box
  Image.fromarray(array).save(path, quality=95)
  out = image_files.decode_image(path, channels=image_files.Channels.RGB,
                                 size=64, center_crop=(0, 20, 178, 198))
  assert out.shape == (64, 64, 3)
  assert out.max() < 40


def test_corrupt_file_is_named(tmp_path):
  path = tmp_path / "broken.png"
  path.write_bytes(b"\x89PNG not really")
  with pytest.raises(DataError, match="broken.png"):
    image_files.decode_image(str(path), channels=image_files.Channels.GRAY)


def test_equalize_class_sizes_truncates_and_rejects_tiny_classes():
  lists, size = image_files.equalize_class_sizes(
      [["a", "b", "c"], ["d", "e"]], what="x", minimum=2)
  assert size == 2 and lists == [["a", "b"], ["d", "e"]]
  with pytest.raises(DataError, match="only 1 images"):
    image_files.equalize_class_sizes([["a"], ["b", "c"]], what="x", minimum=2)
