"""File-format readers for MNIST, Fashion-MNIST and CIFAR-10 (pruning paper).

Wu et al., "Mitigating Backdoor Attacks in Federated Learning", Section V,
evaluates the pruning defence on MNIST, Fashion-MNIST and CIFAR-10. This
module reads the on-disk forms of those datasets, without downloading or
writing anything:

- the official IDX files of MNIST / Fashion-MNIST (`train-*`, `t10k-*`
  images and labels, gzipped or not);
- CIFAR-10's python distribution (`cifar-10-batches-py/`: pickled
  `data_batch_1..5` and `test_batch`, read with a restricted unpickler that
  cannot run code);
- a tensorflow-datasets dataset already prepared under a directory
  (`<dir>/<name>/<version>/dataset_info.json`).

Each reader returns `RawSplits`; `supervised_datasets` chooses among them and
is the public entry point.
"""

from __future__ import annotations

import dataclasses
import enum
import glob
import gzip
import io
import os
import pickle
import zlib
from typing import Optional

import numpy as np

from fedmeta_tf.data.class_pool import DataError

DATASETS_DOC = "docs/datasets.md"
NUM_CLASSES = 10

# Official IDX file names (MNIST and Fashion-MNIST use the same ones).
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_IMAGE_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
IDX_LABEL_MAGIC = 0x00000801  # unsigned byte, 1 dimension

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"


class Source(enum.Enum):
  IDX = "idx"
  CIFAR_PYTHON = "cifar_python"
  TFDS = "tfds"


@dataclasses.dataclass(frozen=True)
class RawSplits:
  """What a data directory holds.

  Attributes:
    source: the layout read.
    where: the directory (or TFDS dataset folder) read.
    x_train, y_train: the official training set; None when only the test set
      is present.
    x_test, y_test: the official test set.
    what: short description of the files, e.g. "official IDX files".
  """

  source: Source
  where: str
  x_train: Optional[np.ndarray]
  y_train: Optional[np.ndarray]
  x_test: np.ndarray
  y_test: np.ndarray
  what: str

  @property
  def test_only(self) -> bool:
    return self.x_train is None


# --- IDX (MNIST, Fashion-MNIST) ---------------------------------------------


def _idx_path(data_dir: str, base: str) -> Optional[str]:
  """`base.gz` in data_dir, else `base`, else None."""
  for path in (os.path.join(data_dir, base + ".gz"),
               os.path.join(data_dir, base)):
    if os.path.isfile(path):
      return path
  return None


def _read_bytes(path: str) -> bytes:
  try:
    if path.endswith(".gz"):
      with gzip.open(path, "rb") as f:
        return f.read()
    with open(path, "rb") as f:
      return f.read()
  except (OSError, EOFError, ValueError, zlib.error) as e:
    # A bad gzip header raises BadGzipFile (an OSError), a truncated one EOF.
    kind = "a complete gzip file" if path.endswith(".gz") else "a readable file"
    raise DataError(f"{path}: expected {kind}, got {type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}") from None


def read_idx(path: str, *, image_shape: Optional[tuple[int, int]] = None
             ) -> np.ndarray:
  """The uint8 array of an IDX file (gzipped when the name ends in .gz).

  Args:
    path: the file.
    image_shape: (rows, cols) for an image file (magic 0x00000803); None for
      a label file (magic 0x00000801).

  Returns:
    uint8 [n, rows, cols] images or [n] labels.

  Raises:
    DataError: unreadable, bad magic, wrong dimensions or truncated, naming
      `path`.
  """
  data = _read_bytes(path)
  images = image_shape is not None
  magic, ndim = ((IDX_IMAGE_MAGIC, 3) if images else (IDX_LABEL_MAGIC, 1))
  kind = "image" if images else "label"
  if len(data) < 4 + 4 * ndim:
    raise DataError(f"{path}: expected an IDX {kind} file (header of "
                    f"{4 + 4 * ndim} bytes), got {len(data)} bytes")
  got = int.from_bytes(data[:4], "big")
  if got != magic:
    raise DataError(f"{path}: expected IDX {kind} magic 0x{magic:08x}, got "
                    f"0x{got:08x}")
  dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big")
          for i in range(ndim)]
  if images and tuple(dims[1:]) != tuple(image_shape):
    raise DataError(f"{path}: expected {image_shape[0]}x{image_shape[1]} "
                    f"images, got {dims[1]}x{dims[2]}")
  body = data[4 + 4 * ndim:]
  size = int(np.prod(dims))
  if len(body) != size:
    raise DataError(f"{path}: expected {size:,} bytes of data for "
                    f"{dims[0]:,} {kind}s after the header, got "
                    f"{len(body):,} (truncated or corrupt)")
  return np.frombuffer(body, np.uint8).reshape(dims)


def _read_idx_pair(data_dir: str, split: str, paths: dict
                   ) -> tuple[np.ndarray, np.ndarray]:
  """(images [n, 28, 28, 1], labels int64 [n]) of `split` ("train"/"test")."""
  image_path, label_path = paths[split]
  images = read_idx(image_path, image_shape=(28, 28))
  labels = read_idx(label_path).astype(np.int64)
  if len(labels) != len(images):
    raise DataError(f"{label_path}: expected {len(images):,} labels (one per "
                    f"image of {image_path}), got {len(labels):,}")
  if len(labels) and labels.max() >= NUM_CLASSES:
    raise DataError(f"{label_path}: expected labels in [0, {NUM_CLASSES}), "
                    f"got {labels.max()}")
  return images[..., None], labels


def find_idx(data_dir: str) -> Optional[dict]:
  """{split: (images path, labels path)} of the IDX files present; None when
  there are none; DataError when a pair is incomplete or the test pair is
  missing."""
  found = {split: [_idx_path(data_dir, base) for base in bases]
           for split, bases in IDX_FILES.items()}
  if not any(p for pair in found.values() for p in pair):
    return None
  for split, bases in IDX_FILES.items():
    pair = found[split]
    for i, path in enumerate(pair):
      other = pair[1 - i]
      if path is None and (other is not None or split == "test"):
        expected = os.path.join(data_dir, bases[i] + ".gz")
        beside = (f" next to {other}" if other else
                  " (the official test set is always needed)")
        raise DataError(f"{expected}: missing, expected{beside}; also "
                        f"accepted without .gz (see {DATASETS_DOC})")
  return {split: tuple(pair) for split, pair in found.items() if pair[0]}


def load_idx(data_dir: str, paths: dict) -> RawSplits:
  x_test, y_test = _read_idx_pair(data_dir, "test", paths)
  x_train = y_train = None
  if "train" in paths:
    x_train, y_train = _read_idx_pair(data_dir, "train", paths)
  return RawSplits(Source.IDX, data_dir, x_train, y_train, x_test, y_test,
                   "official IDX files")


# --- CIFAR-10 python batches -------------------------------------------------


class _BatchUnpickler(pickle.Unpickler):
  """Unpickles only what a CIFAR-10 batch holds (dicts, lists, bytes, numpy
  arrays): a batch file cannot run code."""

  _ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
              ("numpy._core.multiarray", "_reconstruct"),
              ("numpy", "ndarray"), ("numpy", "dtype"),
              ("numpy.core.multiarray", "scalar"),
              ("numpy._core.multiarray", "scalar"),
              ("_codecs", "encode")}

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
    return super().find_class(module, name)


def read_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [n, 32, 32, 3], labels int64 [n]) of one CIFAR-10 python
  batch: a pickled dict with b"data" uint8 [n, 3072] (each row the red, green
  then blue 32x32 planes, row-major) and b"labels" (n ints in [0, 10)).

  Raises:
    DataError: naming `path`, when it is not such a batch.
  """
  expected = ("expected a CIFAR-10 python batch (a pickled dict with b'data' "
              "uint8 [n, 3072] and b'labels')")
  try:
    with open(path, "rb") as f:
      batch = _BatchUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
  except Exception as e:  # pylint: disable=broad-except
    # Truncated or foreign pickles raise many kinds of errors.
    message = str(e).splitlines()[0] if str(e) else ""
    raise DataError(f"{path}: {expected}, got {type(e).__name__}: {message}"
                    ) from None
  if not isinstance(batch, dict):
    raise DataError(f"{path}: {expected}, got a {type(batch).__name__}")
  data = batch.get(b"data", batch.get("data"))
  labels = batch.get(b"labels", batch.get("labels"))
  if data is None or labels is None:
    keys = sorted(str(k) for k in batch)
    raise DataError(f"{path}: {expected}, got keys {', '.join(keys)}")
  data = np.asarray(data)
  if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
    raise DataError(f"{path}: {expected}, got b'data' {data.dtype} "
                    f"{list(data.shape)}")
  labels = np.asarray(labels, np.int64).reshape([-1])
  if len(labels) != len(data):
    raise DataError(f"{path}: expected {len(data):,} labels (one per image), "
                    f"got {len(labels):,}")
  if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
    raise DataError(f"{path}: expected labels in [0, {NUM_CLASSES}), got "
                    f"[{labels.min()}, {labels.max()}]")
  images = data.reshape([-1, 3, 32, 32]).transpose([0, 2, 3, 1])
  return np.ascontiguousarray(images), labels


def find_cifar(data_dir: str) -> Optional[str]:
  """The folder holding CIFAR-10 python batches, None when there are none;
  DataError when the set is incomplete."""
  names = CIFAR_TRAIN_BATCHES + (CIFAR_TEST_BATCH,)
  for folder in (os.path.join(data_dir, CIFAR_FOLDER), data_dir):
    present = [n for n in names if os.path.isfile(os.path.join(folder, n))]
    if not present:
      continue
    if CIFAR_TEST_BATCH not in present:
      raise DataError(f"{os.path.join(folder, CIFAR_TEST_BATCH)}: missing, "
                      f"expected next to {present[0]} (see {DATASETS_DOC})")
    train = [n for n in CIFAR_TRAIN_BATCHES if n in present]
    if train and len(train) != len(CIFAR_TRAIN_BATCHES):
      missing = [n for n in CIFAR_TRAIN_BATCHES if n not in present]
      raise DataError(f"{os.path.join(folder, missing[0])}: missing, expected "
                      f"next to {train[0]} (data_batch_1..5; see "
                      f"{DATASETS_DOC})")
    return folder
  return None


def load_cifar(folder: str) -> RawSplits:
  x_test, y_test = read_cifar_batch(os.path.join(folder, CIFAR_TEST_BATCH))
  x_train = y_train = None
  if os.path.isfile(os.path.join(folder, CIFAR_TRAIN_BATCHES[0])):
    parts = [read_cifar_batch(os.path.join(folder, n))
             for n in CIFAR_TRAIN_BATCHES]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
  return RawSplits(Source.CIFAR_PYTHON, folder, x_train, y_train, x_test,
                   y_test, "CIFAR-10 python batches")


# --- tensorflow-datasets -----------------------------------------------------


def find_tfds(name: str, data_dir: str) -> Optional[str]:
  """The newest `data_dir/<name>/<version>` holding dataset_info.json."""
  found = sorted(glob.glob(os.path.join(data_dir, name, "*",
                                        "dataset_info.json")))
  return os.path.dirname(found[-1]) if found else None


def load_tfds(name: str, data_dir: str, version_dir: str,
              image_shape: tuple[int, int, int]) -> RawSplits:
  """Both splits of the prepared tensorflow-datasets `name` in `data_dir`."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=data_dir)
  arrays = []
  for split in ("train", "test"):
    try:
      batches = list(tfds.as_numpy(builder.as_dataset(
          split=split, as_supervised=True, shuffle_files=False).batch(10000)))
    except Exception as e:  # pylint: disable=broad-except
      # Corrupt records surface as many TF errors.
      message = str(e).splitlines()[0] if str(e) else ""
      raise DataError(f"{version_dir}: cannot read split {split!r} of the "
                      f"prepared tensorflow-datasets '{name}': "
                      f"{type(e).__name__}: {message}") from None
    if not batches:
      raise DataError(f"{version_dir}: split {split!r} is empty")
    x = np.concatenate([b[0] for b in batches]).astype(np.uint8)
    y = np.concatenate([b[1] for b in batches])
    if x.shape[1:] != image_shape:
      raise DataError(f"{version_dir}: expected images of shape "
                      f"{image_shape}, got {x.shape[1:]}")
    arrays += [x, np.asarray(y, np.int64)]
  version = os.path.basename(version_dir)
  return RawSplits(Source.TFDS, version_dir, arrays[0], arrays[1], arrays[2],
                   arrays[3], f"tensorflow-datasets '{name}' {version}")
