"""MNIST, Fashion-MNIST and CIFAR-10 for the pruning system (pruning paper).

Read through tensorflow-datasets from a data directory where they have been
prepared already (`tfds build mnist --data_dir=...` on a machine with
internet, then copy the directory); nothing is downloaded here.
`load_supervised(name, data_dir=...)` returns numpy arrays
(x_train uint8 [N, H, W, ch], y_train int64 [N], x_test, y_test).
"""

from __future__ import annotations

import enum
import glob
import os
from typing import Optional

import numpy as np

from fedmeta_tf.data.class_pool import DataError

DATASETS_DOC = "docs/datasets.md"


class SupervisedDataset(enum.Enum):
  MNIST = "mnist"
  FASHION_MNIST = "fashion_mnist"
  CIFAR10 = "cifar10"


IMAGE_SHAPES = {SupervisedDataset.MNIST: (28, 28, 1),
                SupervisedDataset.FASHION_MNIST: (28, 28, 1),
                SupervisedDataset.CIFAR10: (32, 32, 3)}
NUM_CLASSES = 10


def parse_name(name: str) -> SupervisedDataset:
  try:
    return SupervisedDataset(name)
  except ValueError:
    valid = ", ".join(d.value for d in SupervisedDataset)
    raise ValueError(f"unknown supervised dataset {name!r}; valid: {valid}"
                     ) from None


def default_data_dir() -> str:
  """TFDS's default: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
  return os.environ.get("TFDS_DATA_DIR",
                        os.path.expanduser("~/tensorflow_datasets"))


def check_prepared(name: SupervisedDataset | str,
                   data_dir: Optional[str] = None) -> str:
  """The data_dir holding a prepared `name`; DataError (cheap) otherwise."""
  name = parse_name(name) if isinstance(name, str) else name
  data_dir = data_dir or default_data_dir()
  pattern = os.path.join(data_dir, name.value, "*", "dataset_info.json")
  if not glob.glob(pattern):
    raise DataError(
        f"{name.value}: no prepared tensorflow-datasets '{name.value}' under "
        f"{data_dir!r} (looked for {name.value}/<version>/dataset_info.json); "
        f"on a machine with internet run `tfds build {name.value} "
        f"--data_dir=DIR` and copy DIR here (see {DATASETS_DOC})")
  return data_dir


def load_supervised(name: SupervisedDataset | str, *,
                    data_dir: Optional[str] = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(x_train, y_train, x_test, y_test) of a prepared TFDS dataset.

  Raises:
    DataError: the dataset is not prepared under `data_dir` (never downloads).
  """
  name = parse_name(name) if isinstance(name, str) else name
  data_dir = check_prepared(name, data_dir)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name.value, data_dir=data_dir)
  arrays = []
  for split in ("train", "test"):
    try:
      batches = list(tfds.as_numpy(builder.as_dataset(
          split=split, as_supervised=True, shuffle_files=False).batch(10000)))
    except Exception as e:  # Corrupt records surface as many TF errors.
      raise DataError(f"{name.value}: cannot read split {split!r} under "
                      f"{data_dir!r}: {type(e).__name__}: {e}") from None
    if not batches:
      raise DataError(f"{name.value}: split {split!r} under {data_dir!r} is "
                      "empty")
    x = np.concatenate([b[0] for b in batches]).astype(np.uint8)
    y = np.concatenate([b[1] for b in batches])
    if x.shape[1:] != IMAGE_SHAPES[name]:
      raise DataError(f"{name.value}: images under {data_dir!r} have shape "
                      f"{x.shape[1:]}, expected {IMAGE_SHAPES[name]}")
    arrays += [x, np.asarray(y, np.int64)]
  return tuple(arrays)  # type: ignore[return-value]
