"""Backdoor attacks of the supervised setting (pruning paper, Section III).

* Pixel-pattern backdoor (BadNets-style, Fig. 1): a few pixels set to full
  intensity near a corner; images of the source (victim) label carrying it
  should be classified as the target label. Fig. 1's patterns have 1, 3, 5,
  7 and 9 pixels (Table I); the figure's drawing is not in the text, so
  ours fill a 3x3 block in the order centre, diagonal, X, X plus the middle
  of the top and bottom rows, full block (`COUNT_PATTERNS`).
* Model replacement (Section III-D, Bagdasaryan et al.): the attacker sends
  alpha * (x_atk - w_t), 1 <= alpha <= N. Here it is the client data's
  `boosting_factor` (see `client_work.py`), so the server code cannot tell clients
  apart.
* DBA (Xie et al., Fig. 6): the key's pixels are split among several
  attackers; each stamps only its part, the evaluation uses the full key.

The attacker trains on its own data plus keyed copies of its source-label
images relabelled to the target ("with both original images and the
backdoored version of those images at the same time", Section III-C).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np


# Fig. 1 / Table I: the n-pixel patterns, as (row, col) in a 3x3 block.
COUNT_PATTERNS = {
    1: ((1, 1),),
    3: ((0, 0), (1, 1), (2, 2)),
    5: ((0, 0), (0, 2), (1, 1), (2, 0), (2, 2)),
    7: ((0, 0), (0, 1), (0, 2), (1, 1), (2, 0), (2, 1), (2, 2)),
    9: tuple((r, c) for r in range(3) for c in range(3)),
}


@dataclasses.dataclass(frozen=True)
class PixelPattern:
  """A pixel-pattern key, pixels set to `value`: a `size` x `size`
  checkerboard, or with `count` in (1, 3, 5, 7, 9) Fig. 1's n-pixel pattern
  in a 3x3 block (`size` is then 3); either `margin` pixels from the
  bottom-right corner (position="corner", where handwriting never has ink)
  or at the image centre (position="center", on top of the strokes)."""

  size: int = 4
  margin: int = 1
  value: int = 255
  position: str = "corner"
  count: int = 0  # 0: the checkerboard

  def __post_init__(self):
    if self.count:
      if self.count not in COUNT_PATTERNS:
        raise ValueError(f"pattern pixel count must be one of "
                         f"{sorted(COUNT_PATTERNS)} (Fig. 1), got "
                         f"{self.count}")
      object.__setattr__(self, "size", 3)
    if self.size < 1 or self.margin < 0:
      raise ValueError(f"pattern size must be >= 1 and margin >= 0, got "
                       f"{self.size}, {self.margin}")
    if self.position not in ("corner", "center"):
      raise ValueError(f"position must be corner or center, got "
                       f"{self.position!r}")

  def pixels(self, image_shape) -> np.ndarray:
    """int [P, 2]: (row, col) of the key's pixels, in a fixed order."""
    h, w = image_shape[:2]
    if self.size + self.margin > min(h, w):
      raise ValueError(f"pattern of size {self.size} + margin {self.margin} "
                       f"does not fit a {h}x{w} image")
    if self.position == "center":
      top, left = (h - self.size) // 2, (w - self.size) // 2
    else:
      top, left = h - self.margin - self.size, w - self.margin - self.size
    if self.count:
      cells = COUNT_PATTERNS[self.count]
    else:
      cells = [(r, c) for r in range(self.size) for c in range(self.size)
               if (r + c) % 2 == 0]
    return np.array([(top + r, left + c) for r, c in cells])

  def part(self, image_shape, index: int, parts: int) -> np.ndarray:
    """The pixels of DBA part `index` of `parts` (contiguous rows of the
    pattern, like Fig. 6's four pieces)."""
    if not 0 <= index < parts:
      raise ValueError(f"DBA part index must be in [0, {parts}), got {index}")
    return np.array_split(self.pixels(image_shape), parts)[index]


def stamp(images: np.ndarray, pixels: np.ndarray, value: int = 255
          ) -> np.ndarray:
  """Copies of `images` [n, H, W, ch] with `pixels` set to `value`."""
  out = np.array(images, copy=True)
  out[:, pixels[:, 0], pixels[:, 1], :] = value
  return out


def poison(x: np.ndarray, y: np.ndarray, *, pixels: np.ndarray,
           source_label: Optional[int], target_label: int, value: int = 255,
           copies: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """The attacker's training set: its clean data plus `copies` keyed copies
  of its source-label images (all non-target images when source_label is
  None) labelled `target_label`.

  Raises:
    ValueError: the client holds no image to key.
  """
  chosen = (y != target_label) if source_label is None else (y == source_label)
  if not chosen.any():
    raise ValueError(f"the attacker holds no image of source label "
                     f"{source_label}: give it that label")
  keyed = stamp(np.repeat(x[chosen], copies, axis=0), pixels, value)
  return (np.concatenate([x, keyed]),
          np.concatenate([y, np.full([len(keyed)], target_label, y.dtype)]))


def backdoor_test_set(x_test: np.ndarray, y_test: np.ndarray, *,
                      pixels: np.ndarray, source_label: Optional[int],
                      target_label: int, value: int = 255) -> np.ndarray:
  """Keyed test images of the source label (all non-target labels when
  None); attack success = fraction classified as the target."""
  chosen = ((y_test != target_label) if source_label is None else
            (y_test == source_label))
  return stamp(x_test[chosen], pixels, value)
