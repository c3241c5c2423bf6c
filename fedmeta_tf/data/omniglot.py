"""Omniglot (Lake et al., 2015) as a 28x28 class pool, from any of its forms.

Main paper, Section 3.2: "we resize images to 28x28 and augment 4x using
rotations: we use 1200 classes for meta-training (split among the 4 users) and
418 for meta-testing; for each meta-training class, we hold out 5 examples".
This module only produces the pool of 1623 characters x 20 drawers; the split
is `registry.PROTOCOLS[OMNIGLOT]` applied by `protocol.build_meta_split`.

`load_omniglot(data_dir)` accepts, in this order of preference:

1. a class-pool archive: `data_dir` is an .npz, or holds `omniglot_28.npz`
   (`class_pool.load_class_pool_archive`);
2. the official folder layout (github.com/brendenlake/omniglot, `python/`
   zips): `images_background/<Alphabet>/characterNN/XXXX_YY.png` and
   `images_evaluation/...` under `data_dir` (or `data_dir/python`): 105x105
   binary images, black ink on white, decoded exactly as the archive was made:
   inverted (ink high) and resized to 28x28 with PIL's Lanczos filter;
3. a tensorflow-datasets `omniglot` dataset already prepared under `data_dir`
   (`data_dir/omniglot/<version>/`); it is never downloaded here.

Rows are ordered like the official folders: split (background, then
evaluation), alphabet, character; names are `<Alphabet>/characterNN`, groups
the alphabet, split 0 (images_background) / 1 (images_evaluation).
"""

from __future__ import annotations

import enum
import glob
import os
import re
from typing import Iterable, Optional

import numpy as np

from fedmeta_tf.data import class_pool as class_pool_lib
from fedmeta_tf.data import image_files
from fedmeta_tf.data.class_pool import ClassPool, DataError

IMAGE_SIZE = 28
EXAMPLES_PER_CLASS = 20
NUM_CLASSES = 1623
ARCHIVE_NAME = "omniglot_28.npz"
SPLIT_FOLDERS = ("images_background", "images_evaluation")
TFDS_NAME = "omniglot"
_DRAWER_RE = re.compile(r"^(\d+)_(\d+)\.png$", re.IGNORECASE)


class OmniglotSource(enum.Enum):
  ARCHIVE = "archive"
  FOLDERS = "folders"
  TFDS = "tfds"


def find_source(data_dir: Optional[str]) -> tuple[OmniglotSource, str]:
  """Which form of Omniglot `data_dir` holds, and its path.

  Raises:
    DataError: none of the accepted forms is there; the message lists them.
  """
  how = (f"expected {ARCHIVE_NAME} (a class-pool archive), the official "
         f"folders {SPLIT_FOLDERS[0]}/ and {SPLIT_FOLDERS[1]}/ (unzipped from "
         "github.com/brendenlake/omniglot/tree/master/python), or a prepared "
         f"tensorflow-datasets '{TFDS_NAME}' dataset; see "
         f"{image_files.DATASETS_DOC}")
  if not data_dir:
    raise DataError(f"omniglot needs --data_dir: {how}")
  if os.path.isfile(data_dir):
    return OmniglotSource.ARCHIVE, data_dir
  if not os.path.isdir(data_dir):
    raise DataError(f"omniglot: --data_dir {data_dir!r} does not exist; {how}")
  archive = os.path.join(data_dir, ARCHIVE_NAME)
  if os.path.isfile(archive):
    return OmniglotSource.ARCHIVE, archive
  for root in (data_dir, os.path.join(data_dir, "python")):
    if all(os.path.isdir(os.path.join(root, f)) for f in SPLIT_FOLDERS):
      return OmniglotSource.FOLDERS, root
  if glob.glob(os.path.join(data_dir, TFDS_NAME, "*", "dataset_info.json")):
    return OmniglotSource.TFDS, data_dir
  raise DataError(f"omniglot: nothing usable in --data_dir {data_dir!r}; {how}")


def load_omniglot(data_dir: Optional[str]) -> ClassPool:
  """The Omniglot pool [1623, 20, 28, 28, 1] from `data_dir` (see module)."""
  source, path = find_source(data_dir)
  if source is OmniglotSource.ARCHIVE:
    return class_pool_lib.load_class_pool_archive(path)
  if source is OmniglotSource.FOLDERS:
    return load_from_folders(path)
  return load_from_tfds(path)


def load_from_folders(root: str, *, image_size: int = IMAGE_SIZE) -> ClassPool:
  """Decodes the official layout under `root` (see the module docstring).

  Raises:
    DataError: a class has a different number of drawers than the first
      one, a file name is not XXXX_YY.png, or an image is corrupt (by path).
  """
  images, names, groups, split = [], [], [], []
  for side, folder in enumerate(SPLIT_FOLDERS):
    split_dir = os.path.join(root, folder)
    for alphabet in image_files.list_subdirectories(split_dir):
      alphabet_dir = os.path.join(split_dir, alphabet)
      for character in image_files.list_subdirectories(alphabet_dir):
        files = _drawer_files(os.path.join(alphabet_dir, character))
        images.append(image_files.decode_images(
            files, channels=image_files.Channels.GRAY, size=image_size,
            invert=True))
        names.append(f"{alphabet}/{character}")
        groups.append(alphabet)
        split.append(side)
  if not images:
    raise DataError(f"omniglot: no character folders under {root!r}/"
                    f"{{{','.join(SPLIT_FOLDERS)}}}/<Alphabet>/characterNN")
  sizes = {len(i) for i in images}
  if len(sizes) != 1:
    odd = next(n for n, i in zip(names, images) if len(i) != len(images[0]))
    raise DataError(f"omniglot: character {odd!r} under {root!r} has a "
                    f"different number of images than {names[0]!r} "
                    f"({len(images[0])}); every character needs the same")
  return class_pool_lib.make_class_pool(np.stack(images), names=names,
                                        groups=groups, split=split)


def _drawer_files(character_dir: str) -> list[str]:
  """The character's images ordered by drawer (the _YY suffix)."""
  files = image_files.list_images(character_dir)
  keyed = []
  for path in files:
    match = _DRAWER_RE.match(os.path.basename(path))
    if not match:
      raise DataError(f"omniglot: unexpected file {path!r}; official images "
                      "are named XXXX_YY.png")
    keyed.append((int(match.group(2)), path))
  if not keyed:
    raise DataError(f"omniglot: no images in {character_dir!r}")
  return [p for _, p in sorted(keyed)]


def load_from_tfds(data_dir: str) -> ClassPool:
  """Reads a prepared tensorflow-datasets `omniglot` under `data_dir`.

  TFDS's images are 105x105x3, black ink on white; they are converted like the
  official folders (channel 0, inverted, Lanczos to 28x28).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(TFDS_NAME, data_dir=data_dir)
  alphabet_names = builder.info.features["alphabet"].names
  examples = []
  for side, split in enumerate(("train", "test")):
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    for ex in tfds.as_numpy(dataset):
      examples.append((side, alphabet_names[int(ex["alphabet"])],
                       int(ex["alphabet_char_id"]), ex["image"]))
  return pool_from_examples(examples, image_size=IMAGE_SIZE)


def pool_from_examples(examples: Iterable[tuple[int, str, int, np.ndarray]], *,
                       image_size: int) -> ClassPool:
  """Groups (split, alphabet, char_id, image [105,105,ch]) into a pool."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  by_class: dict[tuple[int, str, int], list[np.ndarray]] = {}
  for side, alphabet, char_id, image in examples:
    gray = Image.fromarray(255 - np.asarray(image, np.uint8)[..., 0])
    small = np.asarray(gray.resize((image_size, image_size), Image.LANCZOS))
    by_class.setdefault((side, alphabet, char_id), []).append(small)
  if not by_class:
    raise DataError("omniglot: the tensorflow-datasets dataset is empty")
  keys = sorted(by_class)
  sizes = {len(by_class[k]) for k in keys}
  if len(sizes) != 1:
    raise DataError(f"omniglot: tensorflow-datasets classes have different "
                    f"numbers of examples {sorted(sizes)}; expected 20 each")
  return class_pool_lib.make_class_pool(
      np.stack([np.stack(by_class[k]) for k in keys]),
      names=[f"{a}/character{c + 1:02d}" for _, a, c in keys],
      groups=[a for _, a, _ in keys], split=[s for s, _, _ in keys])
