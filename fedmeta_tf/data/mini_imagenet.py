"""mini-ImageNet (Vinyals et al., 2016; Ravi & Larochelle split), a pool.

Main paper, Section 3.2: "100 classes, each with 600 examples (84x84 color
images). We use 64 classes for meta-training (split among 4 users) and 20
classes for meta-testing, as in [55]; for each meta-training class, we hold out
20 validation examples. We also reserve 1 backdoor and 1 target class": the
target is the arctic fox (`TARGET_WNID`), the backdoor the yawl
(`BACKDOOR_WNID`), both meta-training classes of the Ravi split.

`load_mini_imagenet(data_dir)` accepts the layouts in circulation:

1. class folders: `data_dir/{train,val,test}/<wnid>/*.jpg|png` (84x84; other
   sizes are resized with PIL's Lanczos filter), each wnid in one folder;
2. split by image: `data_dir/train/<wnid>/` and `data_dir/val/<wnid>/` (and
   optionally `test/<wnid>/`) holding the SAME 100 classes, their images
   split between the folders (often 500 / 100). The images of a class are
   merged and the classes re-split into the Ravi & Larochelle classes
   (`RAVI_SPLIT_FILE`, shipped with the package: 64 / 16 / 20 wnids);
3. the Ravi & Larochelle split CSVs: `data_dir/{train,val,test}.csv` (header
   `filename,label`, label = wnid) next to `data_dir/images/<filename>` (the
   original ImageNet crops, resized to 84x84 with Lanczos);
4. the pickled caches `data_dir/mini-imagenet-cache-{train,val,test}.pkl`
   (dicts with `image_data` uint8 [N, 84, 84, 3] and `class_dict`
   {wnid: [indices]}). Pickle can run code when loaded: these files are only
   read from the path the user gives, and through an unpickler that accepts
   nothing but numpy arrays, dicts, lists and strings (anything else is a
   DataError), so a tampered file cannot run code.

The pool has 100 classes x 600 examples [100, 600, 84, 84, 3]; names are the
wnids, groups the split name, and split 0 (train), 1 (test), -1 (val, unused
by the protocol: `registry.PROTOCOLS[MINIIMAGENET]` uses this split field).
"""

from __future__ import annotations

import csv
import enum
import functools
import importlib.resources
import os
import pickle
from typing import Optional, Sequence

from absl import logging
import numpy as np

from fedmeta_tf.data import class_pool as class_pool_lib
from fedmeta_tf.data import image_files
from fedmeta_tf.data.class_pool import ClassPool, DataError

IMAGE_SIZE = 84
EXAMPLES_PER_CLASS = 600
SPLITS = ("train", "val", "test")
SPLIT_CODES = {"train": class_pool_lib.SPLIT_BACKGROUND,
               "val": class_pool_lib.SPLIT_UNSPECIFIED,
               "test": class_pool_lib.SPLIT_EVALUATION}
CLASS_COUNTS = {"train": 64, "val": 16, "test": 20}
TARGET_WNID = "n02120079"  # arctic fox (Fig. 2a)
BACKDOOR_WNID = "n04612504"  # yawl (Fig. 2b)
# Section 3.2: per reserved class, examples for benign clients and for the
# attacker's benign training; keyed attack-training and validation sets.
BENIGN_EXAMPLES = 480
ATTACKER_BENIGN_EXAMPLES = 100
ATTACK_TRAIN_EXAMPLES = 100
ATTACK_VAL_EXAMPLES = 50
CACHE_PATTERN = "mini-imagenet-cache-{split}.pkl"
RAVI_SPLIT_FILE = "ravi_split.txt"  # Package data: "<split> <wnid>" lines.
_MIN_EXAMPLES = 2


class Layout(enum.Enum):
  CLASS_FOLDERS = "class_folders"
  BY_IMAGE = "by_image"
  CSV = "csv"
  PICKLE = "pickle"


_LAYOUT_LINES = {
    Layout.CLASS_FOLDERS: "class folders train/, val/, test/ (the Ravi class "
                          "split)",
    Layout.BY_IMAGE: "class folders split by image (the same classes in "
                     "every folder): images merged per class and re-split "
                     "into the Ravi classes",
    Layout.CSV: "Ravi split CSVs next to images/",
    Layout.PICKLE: "pickled caches",
}


@functools.lru_cache(maxsize=1)
def ravi_split() -> dict[str, tuple[str, ...]]:
  """{split: wnids} of Ravi & Larochelle (2017): 64 train, 16 val, 20 test.

  Section 3.2 of the main paper uses this class split ("as in [55]"); the
  lists are public and ship with the package (`RAVI_SPLIT_FILE`).
  """
  text = importlib.resources.files(__package__).joinpath(
      RAVI_SPLIT_FILE).read_text()
  split: dict[str, list[str]] = {s: [] for s in SPLITS}
  for line in text.splitlines():
    if line.strip() and not line.startswith("#"):
      name, wnid = line.split()
      split[name].append(wnid)
  return {s: tuple(sorted(w)) for s, w in split.items()}


def find_layout(data_dir: Optional[str]) -> Layout:
  """Which layout `data_dir` holds; DataError listing all of them otherwise."""
  how = ("expected train/, val/, test/ class folders (<wnid>/*.jpg), or "
         "train/ and val/ holding the same classes split by image, or "
         "train.csv, val.csv, test.csv next to images/, or "
         f"{CACHE_PATTERN.format(split='{train,val,test}')}; see "
         f"{image_files.DATASETS_DOC}")
  if not data_dir:
    raise DataError(f"miniimagenet needs --data_dir: {how}")
  if not os.path.isdir(data_dir):
    raise DataError(f"miniimagenet: --data_dir {data_dir!r} does not exist; "
                    f"{how}")
  def all_exist(fn, pattern):
    return all(fn(os.path.join(data_dir, pattern.format(split=s)))
               for s in SPLITS)
  by_image = _folders_split_by_image(data_dir)
  if by_image is not None:
    return by_image
  if all_exist(os.path.isdir, "{split}"):
    return Layout.CLASS_FOLDERS
  if (all_exist(os.path.isfile, "{split}.csv") and
      os.path.isdir(os.path.join(data_dir, "images"))):
    return Layout.CSV
  if all_exist(os.path.isfile, CACHE_PATTERN):
    return Layout.PICKLE
  raise DataError(f"miniimagenet: no known layout in --data_dir "
                  f"{data_dir!r}; {how}")


def _split_folders(data_dir: str) -> list[str]:
  """The split folders (train, val, test) present under `data_dir`."""
  return [s for s in SPLITS if os.path.isdir(os.path.join(data_dir, s))]


def _folders_split_by_image(data_dir: str) -> Optional[Layout]:
  """Layout.BY_IMAGE when train/ and val/ (and test/, if present) hold the
  same classes; None when train/ and val/ share no class (or are absent).

  Raises:
    DataError: some but not all classes are shared, naming one such class
      and the folders it appears in.
  """
  folders = _split_folders(data_dir)
  if "train" not in folders or "val" not in folders:
    return None
  wnids = {f: set(image_files.list_subdirectories(os.path.join(data_dir, f)))
           for f in folders}
  if not wnids["train"] & wnids["val"]:
    return None
  if all(w == wnids["train"] for w in wnids.values()):
    return Layout.BY_IMAGE
  _check_disjoint({f: sorted(w) for f, w in wnids.items()},
                  where=lambda f: f"{f}/",
                  what=f"miniimagenet in {data_dir!r}",
                  hint="split by image, every folder must hold the same "
                       "classes; split by class (Ravi), every class must be "
                       "in one folder")
  return None


def _check_disjoint(classes_by_place: dict[str, Sequence[str]], *, where,
                    what: str, hint: str) -> None:
  """DataError naming a class found in two places (`where(place)`)."""
  seen: dict[str, str] = {}
  for place, classes in classes_by_place.items():
    for name in classes:
      if name in seen:
        raise DataError(f"{what}: class {name} appears in both "
                        f"{where(seen[name])} and {where(place)}; {hint}")
      seen[name] = place


def load_mini_imagenet(data_dir: Optional[str], *,
                       image_size: int = IMAGE_SIZE) -> ClassPool:
  """The mini-ImageNet class pool from `data_dir` (see the module docstring)."""
  layout = find_layout(data_dir)
  logging.info("miniimagenet: %s in %s", _LAYOUT_LINES[layout], data_dir)
  if layout is Layout.BY_IMAGE:
    return _assemble(_by_image_splits(data_dir, image_size), data_dir)
  per_split = {}
  for split in SPLITS:
    if layout is Layout.CLASS_FOLDERS:
      per_split[split] = _folder_split(os.path.join(data_dir, split),
                                       image_size)
    elif layout is Layout.CSV:
      per_split[split] = _csv_split(data_dir, split, image_size)
    else:
      per_split[split] = _pickle_split(
          os.path.join(data_dir, CACHE_PATTERN.format(split=split)))
  _check_disjoint({s: c for s, (c, _, _) in per_split.items()},
                  where=_PLACES[layout], what=f"miniimagenet in {data_dir!r}",
                  hint="each class belongs to one split of the Ravi class "
                       "split")
  return _assemble(per_split, data_dir)


_PLACES = {Layout.CLASS_FOLDERS: lambda split: f"{split}/",
           Layout.CSV: lambda split: f"{split}.csv",
           Layout.PICKLE: lambda split: CACHE_PATTERN.format(split=split)}


def _by_image_splits(data_dir, image_size):
  """Every class's images from all split folders, re-split by `ravi_split`."""
  folders = _split_folders(data_dir)
  found = set(image_files.list_subdirectories(os.path.join(data_dir, "train")))
  ravi = ravi_split()
  expected = {w for wnids in ravi.values() for w in wnids}
  missing, extra = sorted(expected - found), sorted(found - expected)
  if missing or extra:
    raise DataError(
        f"miniimagenet in {data_dir!r}: {', '.join(folders)} hold the same "
        f"{len(found)} classes split by image, but they are not the 100 "
        f"classes of the Ravi split ({len(missing)} missing, e.g. "
        f"{missing[:3]}; {len(extra)} not in it, e.g. {extra[:3]}); see "
        f"{image_files.DATASETS_DOC}")
  per_split = {}
  for split in SPLITS:
    files = [[path for f in folders for path in image_files.list_images(
        os.path.join(data_dir, f, wnid))] for wnid in ravi[split]]
    per_split[split] = list(ravi[split]), files, image_size
  return per_split


def _folder_split(split_dir, image_size):
  classes = image_files.list_subdirectories(split_dir)
  files = [image_files.list_images(os.path.join(split_dir, c)) for c in classes]
  return classes, files, image_size


def _csv_split(data_dir, split, image_size):
  path = os.path.join(data_dir, f"{split}.csv")
  by_class: dict[str, list[str]] = {}
  with open(path, newline="") as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None or [h.strip() for h in header[:2]] != ["filename",
                                                              "label"]:
      raise DataError(f"miniimagenet: {path!r} must start with the header "
                      f"'filename,label', got {header}")
    for line, row in enumerate(reader, start=2):
      if len(row) < 2:
        raise DataError(f"miniimagenet: {path!r} line {line} is not "
                        "'filename,label'")
      by_class.setdefault(row[1].strip(), []).append(
          os.path.join(data_dir, "images", row[0].strip()))
  classes = sorted(by_class)
  return classes, [by_class[c] for c in classes], image_size


class _ArraysOnlyUnpickler(pickle.Unpickler):
  """Refuses every global but the numpy array machinery (no code execution)."""

  _ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
              ("numpy._core.multiarray", "_reconstruct"),
              ("numpy.core.multiarray", "scalar"),
              ("numpy", "ndarray"), ("numpy", "dtype"),
              ("builtins", "dict"), ("builtins", "list"),
              ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")}

  def find_class(self, module, name):
    if (module, name) in self._ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def _pickle_split(path):
  try:
    with open(path, "rb") as f:
      cache = _ArraysOnlyUnpickler(f, encoding="latin1").load()
  except Exception as e:  # Truncated/tampered pickles raise many types.
    raise DataError(f"miniimagenet: pickled cache {path!r} is unreadable or "
                    f"not a mini-ImageNet cache: {type(e).__name__}: {e}"
                    ) from None
  if (not isinstance(cache, dict) or "image_data" not in cache or
      "class_dict" not in cache):
    raise DataError(f"miniimagenet: {path!r} needs keys 'image_data' and "
                    "'class_dict'")
  data = np.asarray(cache["image_data"])
  if data.ndim != 4 or data.shape[-1] != 3 or data.dtype != np.uint8:
    raise DataError(f"miniimagenet: {path!r} image_data must be uint8 "
                    f"[N, H, W, 3], got {data.dtype} {data.shape}")
  classes = sorted(cache["class_dict"])
  return classes, [data[np.asarray(cache["class_dict"][c], np.int64)]
                   for c in classes], None


def _assemble(per_split, data_dir) -> ClassPool:
  names, groups, split_codes, members = [], [], [], []
  for split, (classes, items, _) in per_split.items():
    names += classes
    groups += [split] * len(classes)
    split_codes += [SPLIT_CODES[split]] * len(classes)
    members += items
  members, size = image_files.equalize_class_sizes(
      members, what=f"miniimagenet in {data_dir!r}", minimum=_MIN_EXAMPLES)
  images = []
  for split, (classes, _, image_size) in per_split.items():
    for _ in classes:
      item = members[len(images)]
      if image_size is None:  # Decoded arrays (pickled cache).
        images.append(np.asarray(item))
      else:
        images.append(image_files.decode_images(
            item, channels=image_files.Channels.RGB, size=image_size))
  return class_pool_lib.make_class_pool(np.stack(images), names=names,
                                        groups=groups, split=split_codes)


def describe_layout(pool: ClassPool) -> str:
  """Class counts per split, compared with the paper's 64/16/20."""
  counts = {s: int(np.sum(np.asarray(pool.groups) == s)) for s in SPLITS}
  return ", ".join(f"{s} {counts[s]} classes (paper {CLASS_COUNTS[s]})"
                   for s in SPLITS)
