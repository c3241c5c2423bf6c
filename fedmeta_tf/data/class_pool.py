"""The class pool: the one in-memory form every few-shot dataset takes.

A class pool is a dense array `images[C, S, H, W, ch]` (uint8, ink/foreground
high) of C classes with S examples each, plus per-class metadata: a name, a
group (the Omniglot alphabet, the Unicode script of a glyph, ...) and the
original split (0 = background / meta-train side, 1 = evaluation / meta-test
side, -1 = unspecified). Every loader (embedded glyphs, Omniglot, a user's
.npz archive, ...) returns one; the protocol code (`fedmeta_tf.data.protocol`)
turns it into meta-train / meta-test pools and client partitions.

The on-disk "class-pool archive" is an .npz with the same fields:
`images[C, S, H, W(, ch)]` (required), `names[C]`, `groups[C]`, `split[C]`
(optional). The real Omniglot archive also calls `groups` `alphabet`;
`load_class_pool_archive` accepts both.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import numpy as np

SPLIT_BACKGROUND = 0
SPLIT_EVALUATION = 1
SPLIT_UNSPECIFIED = -1


class DataError(ValueError):
  """Raised for missing or malformed data; the message is one line for users."""


@dataclasses.dataclass(frozen=True)
class ClassPool:
  """C classes of S examples each, with per-class metadata.

  Attributes:
    images: uint8 array [C, S, H, W, ch].
    names: C class names.
    groups: C group names (alphabet, script, ...).
    split: int8 array [C]: 0 background, 1 evaluation, -1 unspecified.
  """

  images: np.ndarray
  names: tuple[str, ...]
  groups: tuple[str, ...]
  split: np.ndarray

  def __post_init__(self):
    if self.images.ndim != 5:
      raise DataError(
          f"class pool images must be [C, S, H, W, ch], got shape {self.images.shape}")
    if self.images.dtype != np.uint8:
      raise DataError(f"class pool images must be uint8, got {self.images.dtype}")
    c = self.images.shape[0]
    for field in ("names", "groups", "split"):
      if len(getattr(self, field)) != c:
        raise DataError(
            f"class pool field {field!r} has {len(getattr(self, field))} entries "
            f"for {c} classes")

  @property
  def num_classes(self) -> int:
    return self.images.shape[0]

  @property
  def examples_per_class(self) -> int:
    return self.images.shape[1]

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.images.shape[2:])  # type: ignore[return-value]

  def select(self, class_indices: Sequence[int]) -> "ClassPool":
    """Returns the pool restricted to `class_indices`, in that order."""
    idx = np.asarray(class_indices, dtype=np.int64)
    return ClassPool(
        images=self.images[idx],
        names=tuple(self.names[i] for i in idx),
        groups=tuple(self.groups[i] for i in idx),
        split=self.split[idx],
    )


def make_class_pool(images: np.ndarray,
                    names: Optional[Sequence[str]] = None,
                    groups: Optional[Sequence[str]] = None,
                    split: Optional[Sequence[int]] = None) -> ClassPool:
  """Builds a ClassPool, adding a channel axis and default metadata."""
  images = np.asarray(images)
  if images.ndim == 4:
    images = images[..., None]
  c = images.shape[0] if images.ndim >= 1 else 0
  names = tuple(str(n) for n in names) if names is not None else tuple(
      f"class{i:05d}" for i in range(c))
  groups = tuple(str(g) for g in groups) if groups is not None else ("",) * c
  split_arr = (np.asarray(split, dtype=np.int8) if split is not None else
               np.full([c], SPLIT_UNSPECIFIED, np.int8))
  return ClassPool(images=images, names=names, groups=groups, split=split_arr)


def load_class_pool_archive(path: str) -> ClassPool:
  """Loads a class-pool archive (.npz); see the module docstring for fields.

  Raises:
    DataError: the file is missing, unreadable or lacks a valid `images`.
  """
  if not os.path.isfile(path):
    raise DataError(
        f"class-pool archive {path!r} not found: expected an .npz with "
        "images[C, S, H, W(, ch)] uint8 (see docs/datasets.md)")
  try:
    with np.load(path, allow_pickle=False) as archive:
      fields = {k: archive[k] for k in archive.files}
  except Exception as e:  # np.load raises many types for corrupt files.
    raise DataError(f"class-pool archive {path!r} is unreadable: {e}") from None
  if "images" not in fields:
    raise DataError(
        f"class-pool archive {path!r} has no 'images' array "
        f"(it has {sorted(fields)}); expected images[C, S, H, W(, ch)] uint8")
  images = fields["images"]
  if images.ndim not in (4, 5) or images.dtype != np.uint8:
    raise DataError(
        f"class-pool archive {path!r}: 'images' must be uint8 [C, S, H, W(, ch)], "
        f"got {images.dtype} {images.shape}")
  names = fields.get("names")
  if names is None and "character" in fields:
    groups_for_names = fields.get("alphabet")
    names = ([f"{a}/{c}" for a, c in zip(groups_for_names, fields["character"])]
             if groups_for_names is not None else fields["character"])
  groups = fields.get("groups", fields.get("alphabet"))
  try:
    return make_class_pool(images, names=names, groups=groups,
                           split=fields.get("split"))
  except DataError as e:
    raise DataError(f"class-pool archive {path!r}: {e}") from None


def save_class_pool_archive(pool: ClassPool, path: str) -> None:
  """Writes `pool` as a class-pool archive (atomically)."""
  tmp = path + ".tmp.npz"
  np.savez_compressed(tmp, images=pool.images, names=np.asarray(pool.names),
                      groups=np.asarray(pool.groups), split=pool.split)
  os.replace(tmp, path)
