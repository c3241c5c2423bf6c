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

A stamp split into `parts` local patterns (`StampKey.local(i)`) is DBA's
global trigger (Xie et al., ICLR 2020, "DBA: Distributed Backdoor Attacks
against Federated Learning", Section 2.2, Fig. 1): attacker i stamps local
pattern i only, the backdoor is evaluated with the whole (global) key.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Optional, Sequence

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


def local_rows(size: int, parts: int) -> list[np.ndarray]:
  """DBA's split of a `size`-pixel stamp into `parts` local patterns: bands
  of consecutive rows, as even as they go (a 4x4 square in 4 parts: one row
  each, DBA's four stripes, Fig. 1). Every shape has a pixel in each row,
  so no local pattern is empty."""
  return np.array_split(np.arange(size), parts)


@dataclasses.dataclass(frozen=True)
class StampKey:
  """A pattern stamped on the image (Omniglot Fig. 1c, mini-ImageNet Fig. 2c).

  Attributes:
    shape: the pattern.
    size: its side in pixels.
    position: where it goes; `margin` pixels from the named corner.
    margin: distance from the image border.
    value: the uint8 value written on every channel (Omniglot ink is 255).
    parts: DBA's local patterns (`local_rows`): 1 (the papers' single
      attacker) leaves the key whole.
    part: None: the global key, every pixel of the pattern; i: local
      pattern i only (what DBA's attacker i stamps).
  """

  shape: KeyShape = KeyShape.SQUARE
  size: int = 4
  position: KeyPosition = KeyPosition.BOTTOM_RIGHT
  margin: int = 1
  value: int = 255
  parts: int = 1
  part: Optional[int] = None

  def __post_init__(self):
    if self.size <= 0:
      raise ValueError(f"key size must be positive, got {self.size}")
    if self.margin < 0:
      raise ValueError(f"key margin must be >= 0, got {self.margin}")
    if not 0 <= self.value <= 255:
      raise ValueError(f"key value must be in [0, 255], got {self.value}")
    if not 1 <= self.parts <= self.size:
      raise ValueError(f"a key of size {self.size} splits into 1..{self.size} "
                       f"DBA local patterns (one row band each), got "
                       f"{self.parts}")
    if self.part is not None and not 0 <= self.part < self.parts:
      raise ValueError(f"local pattern {self.part} of a key split into "
                       f"{self.parts} does not exist")

  def local(self, part: int) -> "StampKey":
    """DBA's local pattern `part` of this (global) key."""
    return dataclasses.replace(self, part=part)

  def mask(self) -> np.ndarray:
    """bool [size, size]: the pixels this key sets (`local_rows` of the
    pattern for a local pattern, all of it for the global key)."""
    mask = pattern_mask(self.shape, self.size)
    if self.part is None:
      return mask
    rows = np.zeros([self.size, 1], bool)
    rows[local_rows(self.size, self.parts)[self.part]] = True
    return mask & rows

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
    region[..., self.mask(), :] = self.value
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
