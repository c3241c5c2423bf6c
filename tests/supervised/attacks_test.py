"""Pixel-pattern key, DBA parts, poisoning."""

import numpy as np
import pytest

from fedmeta_tf.supervised import attacks


def test_pixel_pattern_and_dba_parts_cover_the_key():
  key = attacks.PixelPattern(size=4, margin=1)
  pixels = key.pixels((28, 28))
  assert len(pixels) == 8  # checkerboard half of 4x4
  assert pixels[:, 0].min() == 23 and pixels[:, 0].max() == 26
  parts = [key.part((28, 28), i, 4) for i in range(4)]
  np.testing.assert_array_equal(np.concatenate(parts), pixels)
  with pytest.raises(ValueError, match="does not fit"):
    attacks.PixelPattern(size=30).pixels((28, 28))


def test_poison_adds_keyed_relabelled_source_copies():
  x = np.zeros([6, 8, 8, 1], np.uint8)
  y = np.array([0, 1, 2, 2, 1, 0])
  pixels = np.array([[7, 7], [6, 6]])
  px, py = attacks.poison(x, y, pixels=pixels, source_label=2, target_label=0,
                          copies=2)
  assert len(px) == 6 + 4
  np.testing.assert_array_equal(py[6:], [0, 0, 0, 0])
  assert np.all(px[6:, 7, 7, 0] == 255) and np.all(px[:6] == 0)
  with pytest.raises(ValueError, match="no image of source label"):
    attacks.poison(x, y, pixels=pixels, source_label=5, target_label=0)
  keyed = attacks.backdoor_test_set(x, y, pixels=pixels, source_label=None,
                                    target_label=0)
  assert len(keyed) == 4  # every non-target image


def test_center_pattern_sits_on_the_strokes():
  pixels = attacks.PixelPattern(size=4, position="center").pixels((28, 28))
  assert pixels[:, 0].min() == 12 and pixels[:, 0].max() == 15
  with pytest.raises(ValueError, match="position"):
    attacks.PixelPattern(position="top")


@pytest.mark.parametrize("count", [1, 3, 5, 7, 9])
def test_fig1_patterns_have_their_pixel_count_in_the_corner(count):
  """Table I's 1-9 pixel patterns: n distinct pixels in the 3x3 block one
  pixel from the bottom-right corner of a 28x28 image."""
  pixels = attacks.PixelPattern(count=count).pixels((28, 28))
  assert len({tuple(p) for p in pixels}) == count
  assert pixels.min() >= 24 and pixels.max() <= 26
  images = attacks.stamp(np.zeros([1, 28, 28, 1], np.uint8), pixels)
  assert int((images == 255).sum()) == count


def test_pattern_counts_other_than_fig1s_are_errors():
  with pytest.raises(ValueError, match="one of"):
    attacks.PixelPattern(count=4)
