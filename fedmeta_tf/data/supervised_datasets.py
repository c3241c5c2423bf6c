"""MNIST, Fashion-MNIST and CIFAR-10 for the pruning system (pruning paper).

Wu et al., "Mitigating Backdoor Attacks in Federated Learning", Section V:
the defence is evaluated on MNIST, Fashion-MNIST and CIFAR-10. This module
reads them in the forms users have them; nothing is downloaded and nothing is
written. `load_supervised(name, data_dir=DIR)` accepts, in this order of
preference, whatever DIR holds (default `data/<name>`):

1. MNIST / Fashion-MNIST: the official IDX files `train-images-idx3-ubyte.gz`,
   `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`,
   `t10k-labels-idx1-ubyte.gz`, gzipped or not (same names without `.gz`);
2. CIFAR-10: its python distribution `cifar-10-batches-py/` (`data_batch_1`
   .. `data_batch_5`, `test_batch`), in DIR or DIR being that folder;
3. a tensorflow-datasets dataset already prepared under DIR
   (`DIR/<name>/<version>/dataset_info.json`).

It returns numpy (x_train uint8 [N, H, W, ch], y_train int64 [N], x_test,
y_test). `load_supervised_task(name, DIR, seed=...)` is what training calls:
it also accepts the official test set alone (`t10k-*` only, or CIFAR's
`test_batch` only) and then splits it, stratified by label and seeded, into
client training / server validation / test = 80 / 10 / 10 % (10,000 images:
8,000 / 1,000 / 1,000), the CPU-sized protocol of docs/datasets.md.

The file-format readers live in `supervised_files`; this module is the
public entry point.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from typing import Optional, Sequence

import numpy as np

from fedmeta_tf.data.class_pool import DataError
# CIFAR_FOLDER, NUM_CLASSES, RawSplits and Source are also re-exported for
# callers and tests.
from fedmeta_tf.data.supervised_files import CIFAR_FOLDER
from fedmeta_tf.data.supervised_files import CIFAR_TEST_BATCH
from fedmeta_tf.data.supervised_files import CIFAR_TRAIN_BATCHES
from fedmeta_tf.data.supervised_files import DATASETS_DOC
from fedmeta_tf.data.supervised_files import find_cifar
from fedmeta_tf.data.supervised_files import find_idx
from fedmeta_tf.data.supervised_files import find_tfds
from fedmeta_tf.data.supervised_files import IDX_FILES
from fedmeta_tf.data.supervised_files import load_cifar
from fedmeta_tf.data.supervised_files import load_idx
from fedmeta_tf.data.supervised_files import load_tfds
from fedmeta_tf.data.supervised_files import NUM_CLASSES
from fedmeta_tf.data.supervised_files import RawSplits
from fedmeta_tf.data.supervised_files import Source

DATA_ROOT = "data"


class SupervisedDataset(enum.Enum):
  MNIST = "mnist"
  FASHION_MNIST = "fashion_mnist"
  CIFAR10 = "cifar10"


IMAGE_SHAPES = {SupervisedDataset.MNIST: (28, 28, 1),
                SupervisedDataset.FASHION_MNIST: (28, 28, 1),
                SupervisedDataset.CIFAR10: (32, 32, 3)}

# The test-set-only protocol: client training / server validation / test.
TEST_ONLY_FRACTIONS = (0.8, 0.1, 0.1)


def parse_name(name: str) -> SupervisedDataset:
  try:
    return SupervisedDataset(name)
  except ValueError:
    valid = ", ".join(d.value for d in SupervisedDataset)
    raise ValueError(f"unknown supervised dataset {name!r}; valid: {valid}"
                     ) from None


def _parse(name: SupervisedDataset | str) -> SupervisedDataset:
  return parse_name(name) if isinstance(name, str) else name


def default_data_dir(name: SupervisedDataset | str) -> str:
  """`data/<name>` (relative to the working directory), as the binaries."""
  return os.path.join(DATA_ROOT, _parse(name).value)


def _looked_for(name: SupervisedDataset) -> str:
  tfds = (f"a prepared tensorflow-datasets {name.value}/<version>/"
          "dataset_info.json")
  if name is SupervisedDataset.CIFAR10:
    files = ", ".join(CIFAR_TRAIN_BATCHES + (CIFAR_TEST_BATCH,))
    return (f"looked for CIFAR-10 python batches {files} in {CIFAR_FOLDER}/ "
            f"or in the directory itself, and {tfds}")
  files = ", ".join(f"{f}.gz" for pair in IDX_FILES.values() for f in pair)
  return (f"looked for the IDX files {files} (or the same without .gz; "
          f"t10k-* alone is enough), and {tfds}")


# --- Entry points ------------------------------------------------------------


def find_source(name: SupervisedDataset | str,
                data_dir: Optional[str] = None) -> tuple[Source, str]:
  """(layout, directory) of what `data_dir` holds for `name`, cheaply (no
  file is parsed).

  Raises:
    DataError: `data_dir` is missing, a file of a set is missing, or nothing
      usable is there (the line lists the file names looked for).
  """
  name = _parse(name)
  data_dir = data_dir or default_data_dir(name)
  if not os.path.isdir(data_dir):
    what = "is not a directory" if os.path.exists(data_dir) else \
        "does not exist"
    raise DataError(f"{name.value}: data directory {data_dir!r} {what}; "
                    f"{_looked_for(name)}; nothing is downloaded (see "
                    f"{DATASETS_DOC})")
  if name is SupervisedDataset.CIFAR10:
    folder = find_cifar(data_dir)
    if folder:
      return Source.CIFAR_PYTHON, folder
  elif find_idx(data_dir):
    return Source.IDX, data_dir
  if find_tfds(name.value, data_dir):
    return Source.TFDS, data_dir
  raise DataError(f"{name.value}: nothing usable in {data_dir!r}: "
                  f"{_looked_for(name)}; nothing is downloaded (see "
                  f"{DATASETS_DOC})")


def check_prepared(name: SupervisedDataset | str,
                   data_dir: Optional[str] = None) -> str:
  """The data_dir holding `name` in a layout this module reads; DataError
  (cheap: no file is parsed) otherwise."""
  name = _parse(name)
  data_dir = data_dir or default_data_dir(name)
  find_source(name, data_dir)
  return data_dir


def read_splits(name: SupervisedDataset | str,
                data_dir: Optional[str] = None) -> RawSplits:
  """The official training set (None when absent) and test set in
  `data_dir` (default data/<name>), from the first layout found (module
  docstring).

  Raises:
    DataError: one line naming the file and what was expected.
  """
  name = _parse(name)
  data_dir = data_dir or default_data_dir(name)
  source, where = find_source(name, data_dir)
  if source is Source.IDX:
    raw = load_idx(where, find_idx(where))
  elif source is Source.CIFAR_PYTHON:
    raw = load_cifar(where)
  else:
    raw = load_tfds(name.value, data_dir, find_tfds(name.value, data_dir),
                    IMAGE_SHAPES[name])
  if raw.x_test.shape[1:] != IMAGE_SHAPES[name]:
    raise DataError(f"{name.value}: images in {where} have shape "
                    f"{raw.x_test.shape[1:]}, expected {IMAGE_SHAPES[name]}")
  if not len(raw.x_test) or (raw.x_train is not None and
                             not len(raw.x_train)):
    raise DataError(f"{name.value}: {raw.what} in {where} hold no images")
  return raw


def load_supervised(name: SupervisedDataset | str, *,
                    data_dir: Optional[str] = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(x_train, y_train, x_test, y_test): the official splits in `data_dir`.

  Pruning paper, Section V (datasets). Images uint8 [N, H, W, ch], labels
  int64 [N]. Needs the full distribution; with only the official test set
  use `load_supervised_task`, which splits it.

  Raises:
    DataError: nothing usable, a file missing or malformed, or only the test
      set present (never downloads).
  """
  name = _parse(name)
  raw = read_splits(name, data_dir)
  if raw.test_only:
    raise DataError(f"{name.value}: {raw.where} holds only the official test "
                    f"set ({_test_files(raw.source)}), not the training set; "
                    "load_supervised_task splits the test set instead (see "
                    f"{DATASETS_DOC})")
  return raw.x_train, raw.y_train, raw.x_test, raw.y_test


def _test_files(source: Source) -> str:
  return "t10k-*" if source is Source.IDX else CIFAR_TEST_BATCH


def stratified_split(labels: np.ndarray, sizes: Sequence[int], *,
                     seed) -> list[np.ndarray]:
  """Splits example indices into parts of exactly `sizes`, stratified.

  Each label's examples are shuffled (seeded) and placed at evenly spaced
  positions (j + 0.5) / count_of_label in [0, 1); all examples are sorted by
  position (ties broken by a seeded draw) and cut into consecutive parts.
  Every part thus holds each label in proportion to its size, within one
  example (exactly when the proportions divide evenly). A pure function of
  (labels, sizes, seed).

  Returns:
    sorted int64 index arrays, one per part.
  """
  labels = np.asarray(labels)
  sizes = [int(s) for s in sizes]
  if sum(sizes) != len(labels) or min(sizes) < 0:
    raise ValueError(f"sizes {sizes} must be >= 0 and sum to {len(labels)}")
  rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), 0x57A7])
  position = np.empty(len(labels))
  for label in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == label))
    position[members] = (np.arange(len(members)) + 0.5) / len(members)
  tiebreak = rng.random(len(labels))
  order = np.lexsort((tiebreak, position))
  cuts = np.cumsum(sizes)[:-1]
  return [np.sort(part).astype(np.int64) for part in np.split(order, cuts)]


def sizes_when_test_only(n: int, val_size: int = 1000
                         ) -> tuple[int, int, int]:
  """(client training, server validation, test) sizes of the test-set-only
  protocol: validation and test `val_size` images each, at most 10 % of `n`
  each; the rest trains (10,000: 8,000 / 1,000 / 1,000)."""
  if val_size <= 0:
    raise ValueError(f"val_size must be positive, got {val_size}")
  val = min(val_size, int(round(n * TEST_ONLY_FRACTIONS[1])))
  test = min(val_size, int(round(n * TEST_ONLY_FRACTIONS[2])))
  return n - val - test, val, test


@dataclasses.dataclass(frozen=True)
class TaskSplit:
  """The task's images and labels: client training, the server's validation
  set, test (`fedmeta_tf.supervised.data.SupervisedData` wraps them)."""

  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray


def load_supervised_task(name: SupervisedDataset | str,
                         data_dir: Optional[str] = None, *, seed: int = 0,
                         val_size: int = 1000):
  """The pruning paper's task (Section V) from `data_dir`, and one line
  saying what was read and how it was split.

  With the full distribution: training = the official training set; the
  server's validation set = `val_size` images of the official test set
  (stratified by label, seeded); test = the rest of it. With only the
  official test set: its images split, stratified by label and seeded,
  into client training / server validation / test, the last two of
  `val_size` images each but at most 10 % (`sizes_when_test_only`). The split is a pure function of the data and
  `seed`.

  Returns:
    (TaskSplit, description line).

  Raises:
    DataError: see `read_splits`.
    ValueError: `val_size` not in (0, test set size).
  """
  name = _parse(name)
  raw = read_splits(name, data_dir)
  x, y = raw.x_test, raw.y_test.astype(np.int32)
  n = len(x)
  if raw.test_only:
    sizes = sizes_when_test_only(n, val_size)
    train, val, test = stratified_split(y, sizes, seed=seed)
    task = TaskSplit(x_train=x[train], y_train=y[train], x_val=x[val],
                     y_val=y[val], x_test=x[test], y_test=y[test])
    line = (f"{name.value}: only the official test set "
            f"({_test_files(raw.source)}) in {raw.where}: its {n:,} images "
            f"split {sizes[0]:,} client training / {sizes[1]:,} server "
            f"validation / {sizes[2]:,} test (stratified by label, seed "
            f"{seed})")
    return task, line
  if not 0 < val_size < n:
    raise ValueError(f"val_size must be in (0, {n}), got {val_size}")
  val, test = stratified_split(y, [val_size, n - val_size], seed=seed)
  task = TaskSplit(x_train=raw.x_train, y_train=raw.y_train.astype(np.int32),
                   x_val=x[val], y_val=y[val], x_test=x[test], y_test=y[test])
  line = (f"{name.value}: {raw.what} in {raw.where}: {len(raw.x_train):,} "
          f"training images; the {n:,} official test images split "
          f"{val_size:,} server validation / {n - val_size:,} test "
          f"(stratified by label, seed {seed})")
  return task, line
