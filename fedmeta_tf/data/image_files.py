"""Decoding image folders into uint8 arrays, with bad files named by path.

Every folder-based loader (Omniglot's official layout, mini-ImageNet's class
folders and CSV layout, CelebA's manual download) reads images through here,
so a bad file always surfaces as one `DataError` line that names the file
and says whether it is missing, unreadable or corrupt (present but not
decodable), instead of a PIL traceback deep inside a loop.
"""

from __future__ import annotations

import enum
import os
from typing import Optional, Sequence

import numpy as np
from PIL import Image
from PIL import UnidentifiedImageError

from fedmeta_tf.data.class_pool import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
DATASETS_DOC = "docs/datasets.md"


class Channels(enum.Enum):
  GRAY = "L"
  RGB = "RGB"


def list_images(directory: str) -> list[str]:
  """Image files directly under `directory`, sorted by name (full paths)."""
  return [os.path.join(directory, f) for f in sorted(os.listdir(directory))
          if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith(".")]


def list_subdirectories(directory: str) -> list[str]:
  """Sub-directory names of `directory`, sorted, hidden ones skipped."""
  return sorted(d for d in os.listdir(directory)
                if not d.startswith(".") and
                os.path.isdir(os.path.join(directory, d)))


def bad_image_error(path: str, error: Exception) -> DataError:
  """The one-line error for an image file that could not be decoded."""
  if isinstance(error, FileNotFoundError) or not os.path.lexists(path):
    return DataError(f"missing image file {path!r} (not found)")
  if isinstance(error, (PermissionError, IsADirectoryError)):
    return DataError(f"unreadable image file {path!r}: "
                     f"{type(error).__name__}: {error}")
  return DataError(f"corrupt image file {path!r} (present but cannot be "
                   f"decoded): {type(error).__name__}: {error}")


def decode_image(path: str, *, channels: Channels, size: Optional[int] = None,
                 invert: bool = False,
                 center_crop: Optional[tuple[int, int, int, int]] = None
                 ) -> np.ndarray:
  """Decodes one image file to uint8 [H, W, ch].

  Args:
    path: the image file.
    channels: GRAY (1 channel) or RGB (3 channels).
    size: resize to size x size with PIL's Lanczos filter (the filter the
      28x28 Omniglot archive was made with); None keeps the file's size.
    invert: 255 - value before resizing (Omniglot: black ink on white ->
      ink high on a zero background).
    center_crop: (left, upper, right, lower) box cropped before resizing.

  Raises:
    DataError: the file is missing, truncated or not an image (names `path`).
  """
  try:
    with Image.open(path) as image:
      image = image.convert(channels.value)
      if invert:
        image = Image.eval(image, lambda v: 255 - v)
      if center_crop is not None:
        image = image.crop(center_crop)
      if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.LANCZOS)
      array = np.asarray(image, dtype=np.uint8)
  except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
    raise bad_image_error(path, e) from None
  if array.ndim == 2:
    array = array[..., None]
  return array


def decode_images(paths: Sequence[str], **kwargs) -> np.ndarray:
  """Decodes `paths` (same size after decoding) to uint8 [N, H, W, ch]."""
  arrays = [decode_image(p, **kwargs) for p in paths]
  shapes = {a.shape for a in arrays}
  if len(shapes) > 1:
    first = arrays[0].shape
    odd = next(p for p, a in zip(paths, arrays) if a.shape != first)
    raise DataError(f"image {odd!r} has a different size than {paths[0]!r} "
                    f"({first}); give a resize size")
  return np.stack(arrays) if arrays else np.zeros([0, 0, 0, 0], np.uint8)


def equalize_class_sizes(per_class: Sequence[Sequence[str]], *, what: str,
                         minimum: int) -> tuple[list[list[str]], int]:
  """Truncates every class's file list to the smallest class's size.

  A class pool is dense (S examples for every class); datasets such as
  mini-ImageNet have equal class sizes, so truncation only happens in
  hand-made folders. Raises DataError when a class has fewer than `minimum`.
  """
  sizes = [len(files) for files in per_class]
  if not sizes:
    raise DataError(f"{what}: no classes found (see {DATASETS_DOC})")
  smallest = min(sizes)
  if smallest < minimum:
    raise DataError(f"{what}: a class has only {smallest} images, at least "
                    f"{minimum} are needed (see {DATASETS_DOC})")
  return [list(files[:smallest]) for files in per_class], smallest
