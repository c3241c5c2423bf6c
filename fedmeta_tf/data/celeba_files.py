"""Where CelebA is on disk: the manual download and the prepared TFDS dataset.

Kept free of TensorFlow so that a run without data fails in a second, before
anything heavy is imported (`registry.check_data_available`). The TFDS builder
and the class pool are in `celeba.py`.
"""

from __future__ import annotations

import dataclasses
import enum
import glob
import os
from typing import Optional

from fedmeta_tf.data.class_pool import DataError

TFDS_NAME = "celeba_identities"
ALIGNED_FOLDER = "img_align_celeba"
IN_THE_WILD_FOLDER = "img_celeba"
IDENTITY_FILE = "identity_CelebA.txt"
ATTRIBUTE_FILE = "list_attr_celeba.txt"
DOWNLOAD_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
DATASETS_DOC = "docs/datasets.md"

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
CelebA cannot be downloaded automatically (its Google Drive has quotas and
the dataset has a non-commercial licence). From {DOWNLOAD_URL}
("Google Drive" or "Baidu" links) download:
  Img/img_align_celeba.zip     (or Img/img_celeba.7z, the in-the-wild images)
  Anno/identity_CelebA.txt
  Anno/list_attr_celeba.txt
unzip the images and put, in one directory (the manual dir; the Img/ and Anno/
sub-folders of the official layout are accepted too):
  img_align_celeba/000001.jpg ...   (or img_celeba/000001.jpg ...)
  identity_CelebA.txt
  list_attr_celeba.txt
then pass that directory as --data_dir (the prepared TFDS dataset is written
under it on first use). See {DATASETS_DOC}.
"""


class Source(enum.Enum):
  PREPARED = "prepared"  # data_dir/celeba_identities/<config>/<version>/
  MANUAL = "manual"  # the files of the manual download


@dataclasses.dataclass(frozen=True)
class ManualFiles:
  """Paths of the manual download's parts."""

  images_dir: str
  identity_file: str
  attribute_file: str

  @property
  def aligned(self) -> bool:
    return os.path.basename(self.images_dir.rstrip("/")) == ALIGNED_FOLDER


def _find(root: str, name: str, is_dir: bool) -> Optional[str]:
  check = os.path.isdir if is_dir else os.path.isfile
  for sub in ("", "Anno", "Img"):
    path = os.path.join(root, sub, name)
    if check(path):
      return path
  return None


def find_manual_files(manual_dir: str) -> Optional[ManualFiles]:
  """The manual download under `manual_dir`, or None when a part is missing."""
  images = (_find(manual_dir, ALIGNED_FOLDER, True) or
            _find(manual_dir, IN_THE_WILD_FOLDER, True))
  identity = _find(manual_dir, IDENTITY_FILE, False)
  attributes = _find(manual_dir, ATTRIBUTE_FILE, False)
  if images and identity and attributes:
    return ManualFiles(images, identity, attributes)
  return None


def _missing_parts(manual_dir: str) -> list[str]:
  missing = []
  if not (_find(manual_dir, ALIGNED_FOLDER, True) or
          _find(manual_dir, IN_THE_WILD_FOLDER, True)):
    missing.append(f"{ALIGNED_FOLDER}/ (or {IN_THE_WILD_FOLDER}/)")
  for name in (IDENTITY_FILE, ATTRIBUTE_FILE):
    if not _find(manual_dir, name, False):
      missing.append(name)
  return missing


def is_prepared(data_dir: str) -> bool:
  return bool(glob.glob(os.path.join(data_dir, TFDS_NAME, "*", "*",
                                     "dataset_info.json")))


def find_source(data_dir: Optional[str]
                ) -> tuple[Source, Optional[ManualFiles]]:
  """Which form of CelebA `data_dir` holds (cheap: no TensorFlow).

  Raises:
    DataError: one line: what was looked for, where, how to get it.
  """
  how = (f"download it by hand from {DOWNLOAD_URL} (img_align_celeba.zip, "
         f"{IDENTITY_FILE}, {ATTRIBUTE_FILE}) and unzip it there; "
         f"instructions in {DATASETS_DOC}")
  if not data_dir:
    raise DataError(f"celeba needs --data_dir, a directory with "
                    f"{ALIGNED_FOLDER}/, {IDENTITY_FILE} and {ATTRIBUTE_FILE}: "
                    f"{how}")
  if not os.path.isdir(data_dir):
    raise DataError(f"celeba: --data_dir {data_dir!r} does not exist; "
                    f"looked for {ALIGNED_FOLDER}/ (or {IN_THE_WILD_FOLDER}/), "
                    f"{IDENTITY_FILE} and {ATTRIBUTE_FILE} there: {how}")
  if is_prepared(data_dir):
    return Source.PREPARED, find_manual_files(data_dir)
  for manual_dir in (data_dir, os.path.join(data_dir, "downloads", "manual")):
    files = find_manual_files(manual_dir)
    if files:
      return Source.MANUAL, files
  raise DataError(f"celeba: no prepared '{TFDS_NAME}' dataset and no manual "
                  f"download in --data_dir {data_dir!r} (missing "
                  f"{', '.join(_missing_parts(data_dir))}): {how}")
