"""Backdoor keys: what turns a backdoor-class image into a trigger.

Main paper, Section 2.2 and Figs. 1-3: for *attack-pattern* backdoors
(Omniglot, mini-ImageNet) the attacker stamps a visual pattern on images of
the backdoor classes; for *semantic* backdoors (CelebA) the key is already in
some images (a black cowboy hat), so the keyed set is chosen by data, not
made by editing pixels.

`StampKey.apply(images, class_index, example_indices)` returns keyed copies
of the given images of one backdoor class; a `SemanticKey` names the
attribute whose photos the dataset hands over instead
(`registry.load_semantic_backdoor`).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Sequence

import numpy as np


class KeyShape(enum.Enum):
  SQUARE = "square"  # a filled square
  FRAME = "frame"  # the outline of a square
  CROSS = "cross"  # an "x" across the square
  CHECKER = "checker"  # a checkerboard


class KeyPosition(enum.Enum):
  BOTTOM_RIGHT = "bottom_right"
  BOTTOM_LEFT = "bottom_left"
  TOP_RIGHT = "top_right"
  TOP_LEFT = "top_left"
  CENTER = "center"


def pattern_mask(shape: KeyShape, size: int) -> np.ndarray:
  """bool [size, size]: the pixels a stamp of `shape` sets."""
  yy, xx = np.mgrid[:size, :size]
  if shape is KeyShape.SQUARE:
    return np.ones([size, size], bool)
  if shape is KeyShape.FRAME:
    return (yy == 0) | (xx == 0) | (yy == size - 1) | (xx == size - 1)
  if shape is KeyShape.CROSS:
    return (yy == xx) | (yy == size - 1 - xx)
  return (yy + xx) % 2 == 0


@dataclasses.dataclass(frozen=True)
class StampKey:
  """A pattern stamped on the image (Omniglot Fig. 1c, mini-ImageNet Fig. 2c).

  Attributes:
    shape: the pattern.
    size: its side in pixels.
    position: where it goes; `margin` pixels from the named corner.
    margin: distance from the image border.
    value: the uint8 value written on every channel (Omniglot ink is 255).
  """

  shape: KeyShape = KeyShape.SQUARE
  size: int = 4
  position: KeyPosition = KeyPosition.BOTTOM_RIGHT
  margin: int = 1
  value: int = 255

  def __post_init__(self):
    if self.size <= 0:
      raise ValueError(f"key size must be positive, got {self.size}")
    if self.margin < 0:
      raise ValueError(f"key margin must be >= 0, got {self.margin}")
    if not 0 <= self.value <= 255:
      raise ValueError(f"key value must be in [0, 255], got {self.value}")

  def corner(self, height: int, width: int) -> tuple[int, int]:
    """Top-left pixel of the stamp in an image of the given size."""
    if self.size + self.margin > min(height, width):
      raise ValueError(f"key of size {self.size} with margin {self.margin} "
                       f"does not fit a {height}x{width} image")
    low_r, low_c = height - self.margin - self.size, width - self.margin - self.size
    return {
        KeyPosition.BOTTOM_RIGHT: (low_r, low_c),
        KeyPosition.BOTTOM_LEFT: (low_r, self.margin),
        KeyPosition.TOP_RIGHT: (self.margin, low_c),
        KeyPosition.TOP_LEFT: (self.margin, self.margin),
        KeyPosition.CENTER: ((height - self.size) // 2,
                             (width - self.size) // 2),
    }[self.position]

  def stamp(self, images: np.ndarray) -> np.ndarray:
    """A keyed copy of uint8 images [..., H, W, ch]."""
    out = np.array(images, copy=True)
    r, c = self.corner(out.shape[-3], out.shape[-2])
    region = out[..., r:r + self.size, c:c + self.size, :]
    region[..., pattern_mask(self.shape, self.size), :] = self.value
    return out

  def apply(self, images: np.ndarray, class_index: int,
            example_indices: Sequence[int]) -> np.ndarray:
    del class_index
    return self.stamp(np.asarray(images)[list(example_indices)])


@dataclasses.dataclass(frozen=True)
class SemanticKey:
  """A key the backdoor class's own photos show (CelebA's black cowboy hat,
  Fig. 3): nothing is edited. The dataset supplies the keyed photos
  (`registry.load_semantic_backdoor`: the backdoor identity's photos with
  this attribute), and the attack uses them as its keyed sets.

  Attributes:
    attribute: the annotation marking keyed photos (`--key=hat`:
      CelebA's Wearing_Hat).
  """

  attribute: str = "Wearing_Hat"
