"""Where CelebA is on disk: the manual download and the prepared TFDS dataset.

Kept free of TensorFlow so that a run without data fails in a second, before
anything heavy is imported (`registry.check_data_available`). Also reads the
manual files: the identity file (a header line, as some copies have, is
skipped), the attribute file (the official `list_attr_celeba.txt` or the
widely circulated `list_attr_celeba.csv`; needed for the hat key alone, main
paper Section 3.2) and the image folder, of which only the identities whose
images are all present are used (`scan_manual`). The TFDS builder and the
class pool are in `celeba.py`.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import glob
import hashlib
import json
import os
from typing import Iterator, Optional, Sequence

from fedmeta_tf.data.class_pool import DataError

TFDS_NAME = "celeba_identities"
ALIGNED_FOLDER = "img_align_celeba"
IN_THE_WILD_FOLDER = "img_celeba"
IDENTITY_FILE = "identity_CelebA.txt"
ATTRIBUTE_FILE = "list_attr_celeba.txt"
ATTRIBUTE_CSV = "list_attr_celeba.csv"
RECORD_FILE = "manual_files.json"  # In the prepared dataset's folder.
DOWNLOAD_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
DATASETS_DOC = "docs/datasets.md"

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
CelebA cannot be downloaded automatically (its Google Drive has quotas and
the dataset has a non-commercial licence). From {DOWNLOAD_URL}
("Google Drive" or "Baidu" links) download:
  Img/img_align_celeba.zip     (or Img/img_celeba.7z, the in-the-wild images)
  Anno/identity_CelebA.txt
  Anno/list_attr_celeba.txt    (only for the hat key; or list_attr_celeba.csv)
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
  attribute_file: Optional[str]  # None: absent (benign training only).

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
  attributes = (_find(manual_dir, ATTRIBUTE_FILE, False) or
                _find(manual_dir, ATTRIBUTE_CSV, False))
  if images and identity:
    return ManualFiles(images, identity, attributes)
  return None


def _missing_parts(manual_dir: str) -> list[str]:
  missing = []
  if not (_find(manual_dir, ALIGNED_FOLDER, True) or
          _find(manual_dir, IN_THE_WILD_FOLDER, True)):
    missing.append(f"{ALIGNED_FOLDER}/ (or {IN_THE_WILD_FOLDER}/)")
  if not _find(manual_dir, IDENTITY_FILE, False):
    missing.append(IDENTITY_FILE)
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
         f"{IDENTITY_FILE}; {ATTRIBUTE_FILE} for the hat key) and unzip it "
         f"there; "
         f"instructions in {DATASETS_DOC}")
  if not data_dir:
    raise DataError(f"celeba needs --data_dir, a directory with "
                    f"{ALIGNED_FOLDER}/ and {IDENTITY_FILE}: "
                    f"{how}")
  if not os.path.isdir(data_dir):
    raise DataError(f"celeba: --data_dir {data_dir!r} does not exist; "
                    f"looked for {ALIGNED_FOLDER}/ (or {IN_THE_WILD_FOLDER}/), "
                    f"and {IDENTITY_FILE} there: {how}")
  files = None
  for manual_dir in (data_dir, os.path.join(data_dir, "downloads", "manual")):
    files = files or find_manual_files(manual_dir)
  if is_prepared(data_dir):
    return Source.PREPARED, files
  if files:
    return Source.MANUAL, files
  raise DataError(f"celeba: no prepared '{TFDS_NAME}' dataset and no manual "
                  f"download in --data_dir {data_dir!r} (missing "
                  f"{', '.join(_missing_parts(data_dir))}): {how}")


def read_identities(path: str) -> dict[str, int]:
  """identity_CelebA.txt: `<file> <identity>` per line.

  Lines before the first such line (a header such as `image_id identity`, or
  a count line, as some copies have; at most 2) are skipped; a malformed
  line after it is refused.
  """
  out = {}
  with open(path) as f:
    for line_num, line in enumerate(f, start=1):
      parts = line.replace(",", " ").split()
      if not parts:
        continue
      if len(parts) != 2 or not parts[1].isdigit():
        if not out and line_num <= 2:
          continue  # A header line.
        raise DataError(f"celeba: {path!r} line {line_num} is not "
                        "'<file> <identity>'")
      out[parts[0]] = int(parts[1])
  if not out:
    raise DataError(f"celeba: {path!r} has no '<file> <identity>' line")
  return out


def _attribute_rows(path: str
                    ) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
  """(attribute names, (line number, [file, v1, ...]) rows) of either form."""
  with open(path, newline="") as f:
    text = f.read()
  if path.endswith(".csv"):  # `image_id,5_o_Clock_Shadow,...` then rows.
    rows = [r for r in csv.reader(text.splitlines()) if r]
    names = [n.strip() for n in rows[0][1:]] if rows else []
    rows = [[v.strip() for v in r] for r in rows[1:]]
    first = 2
  else:  # A count line, the names, then `<file> v1 ... v40` lines.
    lines = text.splitlines()
    start = 1 if lines and lines[0].strip().isdigit() else 0
    names = lines[start].split() if len(lines) > start else []
    if names[:1] == ["image_id"]:
      names = names[1:]
    rows = [line.split() for line in lines[start + 1:]]
    first = start + 2
  if not names:
    raise DataError(f"celeba: {path!r} is too short for an attribute file")
  return names, ((n, r) for n, r in enumerate(rows, start=first) if r)


def read_attributes(path: str, names: Sequence[str]
                    ) -> dict[str, tuple[bool, ...]]:
  """The attributes `names` of every file (True: 1, False: -1 or 0).

  Args:
    path: list_attr_celeba.txt (a count, the 40 names, `<file> +-1 x 40`
      lines) or list_attr_celeba.csv (`image_id,<names>` then rows).
    names: attributes to return, in this order.
  """
  header, rows = _attribute_rows(path)
  missing = [n for n in names if n not in header]
  if missing:
    raise DataError(f"celeba: {path!r} has no attribute(s) {missing}")
  columns = [header.index(n) + 1 for n in names]
  out = {}
  for line_num, parts in rows:
    if len(parts) != len(header) + 1:
      raise DataError(f"celeba: {path!r} line {line_num} has {len(parts) - 1} "
                      f"values for {len(header)} attributes")
    out[parts[0]] = tuple(parts[c] == "1" for c in columns)
  return out


def _digest(path: Optional[str]) -> Optional[str]:
  if path is None:
    return None
  with open(path, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  return f"{os.path.basename(path)} sha256:{digest}"


@dataclasses.dataclass(frozen=True)
class ManualScan:
  """What the manual download holds (read once, before preparing).

  Attributes:
    identities: file name -> identity, from the identity file.
    complete: identity -> its file names, for identities whose files are all
      in the image folder.
    num_identities: identities in the identity file.
    missing_files: files listed in the identity file but not in the folder.
    fingerprint: what the prepared dataset records of the files it came from
      (identity and attribute files' contents, the image folder's file names
      and sizes); a different one means the manual files changed.
  """

  identities: dict[str, int]
  complete: dict[int, list[str]]
  num_identities: int
  missing_files: int
  fingerprint: dict

  def qualifying(self, min_images: int,
                 exclude: Sequence[int] = ()) -> list[int]:
    """Complete identities with >= `min_images` images, sorted."""
    return sorted(i for i, f in self.complete.items()
                  if len(f) >= min_images and i not in exclude)


def scan_manual(files: ManualFiles) -> ManualScan:
  """Reads the identity file and lists the image folder (no decoding)."""
  identities = read_identities(files.identity_file)
  with os.scandir(files.images_dir) as entries:
    sizes = {e.name: e.stat().st_size for e in entries
             if e.is_file() and not e.name.startswith(".")}
  by_identity: dict[int, list[str]] = {}
  for name in sorted(identities):
    by_identity.setdefault(identities[name], []).append(name)
  complete = {i: names for i, names in by_identity.items()
              if all(n in sizes for n in names)}
  listing = "".join(f"{n} {sizes[n]}\n" for n in sorted(sizes))
  fingerprint = {
      "identity_file": _digest(files.identity_file),
      "attribute_file": _digest(files.attribute_file),
      "images": f"{os.path.basename(files.images_dir)}/ {len(sizes)} files "
                f"sha256:{hashlib.sha256(listing.encode()).hexdigest()}"}
  return ManualScan(
      identities=identities, complete=complete,
      num_identities=len(by_identity),
      missing_files=sum(n not in sizes for n in identities),
      fingerprint=fingerprint)


def partial_line(scan: ManualScan, images_dir: str) -> Optional[str]:
  """One line when the image folder lacks some files (None when complete)."""
  if not scan.missing_files:
    return None
  return (f"celeba: {len(scan.complete):,} of {scan.num_identities:,} "
          f"identities have all their images under {images_dir} "
          f"({scan.missing_files:,} image files missing); using those")


def needed(meta_classes: Sequence[int]) -> dict[str, int]:
  """(meta-training, meta-testing[, reserved]) as `too_few_identities`'s
  keyword arguments."""
  train, test, *reserved = meta_classes
  return {"meta_train": train, "meta_test": test,
          "reserved": reserved[0] if reserved else 0}


def too_few_identities(count: int, *, min_images: int, meta_train: int,
                       meta_test: int, missing_files: int = 0,
                       reserved: int = 0) -> Optional[DataError]:
  """The error when `count` qualifying identities are fewer than needed.

  `meta_train`, `meta_test`: the protocol's (--num_meta_train,
  --num_meta_test; main paper Section 3.2: 2156, 200); `reserved`: the
  attack's backdoor and target identities. The line is
  `protocol.too_few_classes`'s, naming the flags for a smaller protocol.
  """
  from fedmeta_tf.data import protocol  # pylint: disable=g-import-not-at-top
  missing = (f"; {missing_files:,} image files listed in {IDENTITY_FILE} are "
             "missing" if missing_files else "")
  return protocol.too_few_classes(
      "celeba", count, meta_train=meta_train, meta_test=meta_test,
      reserved=reserved,
      qualify=f"identities qualify (>= {min_images} images, all present"
      f"{missing})")


def read_record(prepared_dir: str) -> Optional[dict]:
  """The fingerprint recorded when `prepared_dir` was prepared (or None)."""
  path = os.path.join(prepared_dir, RECORD_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_record(prepared_dir: str, fingerprint: dict) -> None:
  with open(os.path.join(prepared_dir, RECORD_FILE), "w") as f:
    json.dump(fingerprint, f, indent=1, sort_keys=True)


def changed_parts(recorded: Optional[dict], fingerprint: dict) -> list[str]:
  """Which manual files differ from those a prepared dataset came from."""
  if recorded is None:
    return ["no record of them (prepared by an older version)"]
  return [key.replace("_", " ") for key in sorted(fingerprint)
          if recorded.get(key) != fingerprint[key]]
