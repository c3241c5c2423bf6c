"""Tests for fedmeta_tf.data.supervised_datasets: tiny fixtures written in the
official on-disk layouts (IDX, CIFAR-10 python batches, mocked TFDS), and the
real MNIST test set when ../shared/data/mnist is present. No network."""

import json
import os
import pickle

import numpy as np
import pytest

from fedmeta_tf.data import supervised_datasets as sd
from fedmeta_tf.data.class_pool import DataError
from tests.conftest import T10K
from tests.conftest import TRAIN
from tests.conftest import idx_images as _idx_images
from tests.conftest import write_cifar_batch
from tests.conftest import idx_labels as _idx_labels
from tests.conftest import write_file as _write
from tests.conftest import write_idx as _write_idx

SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "..",
                            "shared", "data", "mnist")



def _images(labels, shape, seed):
  """uint8 images whose first pixel encodes the index (to track identity)."""
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, size=(len(labels),) + shape, dtype=np.uint8)
  flat = x.reshape([len(labels), -1])
  flat[:, 0] = np.arange(len(labels)) % 256
  flat[:, 1] = np.arange(len(labels)) // 256
  return x


def _labels(n, seed):
  return np.random.default_rng(seed).integers(0, 10, n).astype(np.uint8)


def _balanced(per_label):
  return np.repeat(np.arange(10, dtype=np.uint8), per_label)[
      np.random.default_rng(1).permutation(10 * per_label)]


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("gz", [True, False])
def test_full_idx_distribution(tmp_path, name, gz):
  y_train, y_test = _labels(60, 0), _balanced(5)
  x_train, x_test = _images(y_train, (28, 28), 0), _images(y_test, (28, 28), 1)
  _write_idx(tmp_path, TRAIN, x_train, y_train, gz)
  _write_idx(tmp_path, T10K, x_test, y_test, gz)
  before = sorted(os.listdir(tmp_path))
  a, b, c, d = sd.load_supervised(name, data_dir=str(tmp_path))
  assert a.shape == (60, 28, 28, 1) and a.dtype == np.uint8
  assert c.shape == (50, 28, 28, 1) and d.dtype == np.int64
  np.testing.assert_array_equal(a[..., 0], x_train)
  np.testing.assert_array_equal(b, y_train)
  np.testing.assert_array_equal(c[..., 0], x_test)
  np.testing.assert_array_equal(d, y_test)

  task, line = sd.load_supervised_task(name, str(tmp_path), val_size=10)
  assert len(task.x_train) == 60 and len(task.x_val) == 10
  assert len(task.x_test) == 40
  np.testing.assert_array_equal(np.bincount(task.y_val, minlength=10),
                                np.ones(10))
  assert line.startswith(f"{name}: official IDX files in {tmp_path}")
  assert "10 server validation / 40 test" in line and "\n" not in line
  assert sorted(os.listdir(tmp_path)) == before  # nothing written


def test_gzipped_file_preferred_over_raw(tmp_path):
  y = _balanced(2)
  _write_idx(tmp_path, T10K, _images(y, (28, 28), 0), y, gz=True)
  (tmp_path / T10K[0]).write_bytes(b"not an IDX file")
  x = sd.read_splits("mnist", str(tmp_path)).x_test
  assert x.shape == (20, 28, 28, 1)


def test_test_set_only_is_split_80_10_10(tmp_path):
  y = _balanced(20)  # 200 images, 20 per label.
  x = _images(y, (28, 28), 3)
  _write_idx(tmp_path, T10K, x, y)
  with pytest.raises(DataError, match="only the official test set"):
    sd.load_supervised("mnist", data_dir=str(tmp_path))
  task, line = sd.load_supervised_task("mnist", str(tmp_path), seed=4)
  assert line == (f"mnist: only the official test set (t10k-*) in {tmp_path}:"
                  " its 200 images split 160 client training / 20 server "
                  "validation / 20 test (stratified by label, seed 4)")
  parts = {"train": 16, "val": 2, "test": 2}
  keys = []
  for part, per_label in parts.items():
    xs, ys = getattr(task, f"x_{part}"), getattr(task, f"y_{part}")
    np.testing.assert_array_equal(np.bincount(ys, minlength=10),
                                  np.full(10, per_label))
    index = xs[:, 0, 0, 0].astype(int) + 256 * xs[:, 0, 1, 0].astype(int)
    np.testing.assert_array_equal(xs[..., 0], x[index])  # the same images
    np.testing.assert_array_equal(ys, y[index])
    keys.append(set(index.tolist()))
  assert sum(map(len, keys)) == 200 and set.union(*keys) == set(range(200))

  again, line_again = sd.load_supervised_task("mnist", str(tmp_path), seed=4)
  assert line_again == line
  for part in parts:
    np.testing.assert_array_equal(getattr(again, f"x_{part}"),
                                  getattr(task, f"x_{part}"))
  other, _ = sd.load_supervised_task("mnist", str(tmp_path), seed=5)
  assert not np.array_equal(other.x_val, task.x_val)


def test_stratified_split_sizes_and_purity():
  labels = np.random.default_rng(0).integers(0, 10, 1003)
  parts = sd.stratified_split(labels, [803, 100, 100], seed=7)
  assert [len(p) for p in parts] == [803, 100, 100]
  assert len(np.unique(np.concatenate(parts))) == 1003
  counts = np.bincount(labels, minlength=10)
  for part, size in zip(parts, [803, 100, 100]):
    share = counts * size / len(labels)
    assert np.abs(np.bincount(labels[part], minlength=10) - share).max() <= 1
  for p, q in zip(parts, sd.stratified_split(labels, [803, 100, 100], seed=7)):
    np.testing.assert_array_equal(p, q)
  assert sd.sizes_when_test_only(10000) == (8000, 1000, 1000)
  assert sd.sizes_when_test_only(10000, val_size=500) == (9000, 500, 500)
  assert sd.sizes_when_test_only(200) == (160, 20, 20)


def _cifar_batch(path, n, seed):
  y = _labels(n, seed)
  rng = np.random.default_rng(seed)
  data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
  write_cifar_batch(path, data, y)
  return data, y


@pytest.mark.parametrize("nested", [True, False])
def test_cifar10_python_batches(tmp_path, nested):
  folder = tmp_path / sd.CIFAR_FOLDER
  folder.mkdir()
  train = [_cifar_batch(folder / f"data_batch_{i}", 4, i) for i in range(1, 6)]
  data, y_test = _cifar_batch(folder / "test_batch", 30, 9)
  data_dir = tmp_path if nested else folder
  x_train, y_train, x_test, y = sd.load_supervised("cifar10",
                                                   data_dir=str(data_dir))
  assert x_train.shape == (20, 32, 32, 3) and x_test.shape == (30, 32, 32, 3)
  np.testing.assert_array_equal(y_train, np.concatenate([t[1] for t in train]))
  np.testing.assert_array_equal(y, y_test)
  # Row-major, channel-first rows: red plane, green plane, blue plane.
  assert x_test[2, 0, 1, 0] == data[2, 1]
  assert x_test[2, 3, 4, 1] == data[2, 1024 + 3 * 32 + 4]
  assert x_test[2, 31, 31, 2] == data[2, 3071]
  _, line = sd.load_supervised_task("cifar10", str(data_dir), val_size=10)
  assert "CIFAR-10 python batches" in line


def test_cifar10_test_batch_only(tmp_path):
  _cifar_batch(tmp_path / "test_batch", 50, 0)
  task, line = sd.load_supervised_task("cifar10", str(tmp_path))
  assert (len(task.x_train), len(task.x_val), len(task.x_test)) == (40, 5, 5)
  assert "only the official test set (test_batch)" in line


def test_cifar_pickle_cannot_run_code(tmp_path):
  folder = tmp_path / sd.CIFAR_FOLDER
  folder.mkdir()
  with open(folder / "test_batch", "wb") as f:
    pickle.dump({b"data": os.system}, f)
  with pytest.raises(DataError, match="test_batch: expected a CIFAR-10"):
    sd.load_supervised_task("cifar10", str(tmp_path))


def _fake_prepared(tmp_path, name, version):
  version_dir = tmp_path / name / version
  version_dir.mkdir(parents=True)
  (version_dir / "dataset_info.json").write_text(
      json.dumps({"name": name, "version": version}))


@pytest.mark.parametrize("name, version", [("mnist", "3.0.1"),
                                           ("cifar10", "3.0.2")])
def test_loads_numpy_arrays_from_mocked_tfds(tmp_path, name, version):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  _fake_prepared(tmp_path, name, version)
  with tfds.testing.mock_data(num_examples=6, data_dir=str(tmp_path)):
    x_train, y_train, x_test, y_test = sd.load_supervised(
        name, data_dir=str(tmp_path))
  shape = sd.IMAGE_SHAPES[sd.SupervisedDataset(name)]
  assert x_train.shape == (6,) + shape and x_train.dtype == np.uint8
  assert x_test.shape == (6,) + shape
  assert y_train.dtype == np.int64 and y_train.shape == (6,)
  assert ((0 <= y_test) & (y_test < sd.NUM_CLASSES)).all()


def test_unknown_name():
  with pytest.raises(ValueError, match="valid: mnist, fashion_mnist, cifar10"):
    sd.load_supervised("svhn")


def _one_line(excinfo, *parts):
  message = str(excinfo.value)
  assert "\n" not in message, message
  for part in parts:
    assert str(part) in message, message
  return message


def _valid_t10k(tmp_path, gz=True):
  y = _balanced(2)
  _write_idx(tmp_path, T10K, _images(y, (28, 28), 0), y, gz)
  return y


def test_bad_magic_names_the_file(tmp_path):
  _valid_t10k(tmp_path)
  _write(tmp_path / T10K[1], _idx_images(np.zeros([20, 28, 28], np.uint8)),
         gz=True)
  with pytest.raises(DataError) as e:
    sd.load_supervised_task("mnist", str(tmp_path))
  _one_line(e, f"{tmp_path}/t10k-labels-idx1-ubyte.gz: expected IDX label "
            "magic 0x00000801, got 0x00000803")


def test_wrong_image_size_names_the_file(tmp_path):
  y = _valid_t10k(tmp_path, gz=False)
  _write(tmp_path / T10K[0], _idx_images(_images(y, (32, 32), 0)), gz=False)
  with pytest.raises(DataError) as e:
    sd.load_supervised_task("fashion_mnist", str(tmp_path))
  _one_line(e, "t10k-images-idx3-ubyte: expected 28x28 images, got 32x32")


def test_count_mismatch_names_the_labels_file(tmp_path):
  y = _valid_t10k(tmp_path)
  _write(tmp_path / T10K[1], _idx_labels(y[:-1]), gz=True)
  with pytest.raises(DataError) as e:
    sd.load_supervised_task("mnist", str(tmp_path))
  _one_line(e, "t10k-labels-idx1-ubyte.gz: expected 20 labels", "got 19")


def test_truncated_gzip_names_the_file(tmp_path):
  _valid_t10k(tmp_path)
  path = tmp_path / (T10K[0] + ".gz")
  path.write_bytes(path.read_bytes()[:200])
  with pytest.raises(DataError) as e:
    sd.load_supervised_task("mnist", str(tmp_path))
  _one_line(e, f"{path}: expected a complete gzip file")


def test_not_gzip_names_the_file(tmp_path):
  _valid_t10k(tmp_path)
  (tmp_path / (T10K[1] + ".gz")).write_bytes(b"plain text, not gzip")
  with pytest.raises(DataError) as e:
    sd.load_supervised_task("mnist", str(tmp_path))
  _one_line(e, "t10k-labels-idx1-ubyte.gz: expected a complete gzip file")


def test_truncated_raw_idx_names_the_file(tmp_path):
  _valid_t10k(tmp_path, gz=False)
  path = tmp_path / T10K[0]
  path.write_bytes(path.read_bytes()[:-5])
  with pytest.raises(DataError) as e:
    sd.load_supervised_task("mnist", str(tmp_path))
  _one_line(e, f"{path}: expected 15,680 bytes", "got 15,675")


def test_missing_labels_file_is_named(tmp_path):
  _valid_t10k(tmp_path)
  os.remove(tmp_path / (T10K[1] + ".gz"))
  with pytest.raises(DataError) as e:
    sd.load_supervised_task("mnist", str(tmp_path))
  _one_line(e, f"{tmp_path}/t10k-labels-idx1-ubyte.gz: missing",
            "t10k-images-idx3-ubyte.gz")


def test_train_without_test_set_names_the_missing_file(tmp_path):
  y = _labels(10, 0)
  _write_idx(tmp_path, TRAIN, _images(y, (28, 28), 0), y)
  with pytest.raises(DataError) as e:
    sd.load_supervised("mnist", data_dir=str(tmp_path))
  _one_line(e, "t10k-images-idx3-ubyte.gz: missing")


def test_missing_cifar_batch_is_named(tmp_path):
  for i in (1, 2, 3):
    _cifar_batch(tmp_path / f"data_batch_{i}", 2, i)
  _cifar_batch(tmp_path / "test_batch", 2, 0)
  with pytest.raises(DataError) as e:
    sd.load_supervised("cifar10", data_dir=str(tmp_path))
  _one_line(e, f"{tmp_path}/data_batch_4: missing")


def test_unreadable_pickle_names_the_file(tmp_path):
  (tmp_path / "test_batch").write_bytes(b"\x80\x02}q\x00(truncated")
  with pytest.raises(DataError) as e:
    sd.load_supervised_task("cifar10", str(tmp_path))
  _one_line(e, f"{tmp_path}/test_batch: expected a CIFAR-10 python batch")


@pytest.mark.parametrize("name, file_name", [
    ("mnist", "t10k-labels-idx1-ubyte.gz"), ("cifar10", "data_batch_5")])
def test_empty_dir_lists_the_files_looked_for(tmp_path, name, file_name):
  with pytest.raises(DataError) as e:
    sd.load_supervised_task(name, str(tmp_path))
  _one_line(e, f"{name}: nothing usable in", str(tmp_path), file_name,
            f"{name}/<version>/dataset_info.json", "docs/datasets.md")


def test_missing_dir(tmp_path):
  missing = tmp_path / "nope"
  with pytest.raises(DataError) as e:
    sd.check_prepared("fashion_mnist", str(missing))
  _one_line(e, f"{missing}' does not exist", "train-images-idx3-ubyte.gz",
            "docs/datasets.md")
  assert not missing.exists()


def test_real_mnist_test_set():
  if not os.path.isfile(os.path.join(SHARED_MNIST, T10K[0] + ".gz")):
    pytest.skip("../shared/data/mnist is absent (a user's clone has none)")
  raw = sd.read_splits("mnist", SHARED_MNIST)
  assert raw.test_only and raw.x_test.shape == (10000, 28, 28, 1)
  assert raw.x_test.dtype == np.uint8 and raw.y_test.dtype == np.int64
  counts = np.bincount(raw.y_test)
  assert len(counts) == 10 and counts[1] == 1135
  np.testing.assert_array_equal(
      counts, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
  task, line = sd.load_supervised_task("mnist", SHARED_MNIST, seed=0)
  assert "its 10,000 images split 8,000 client training / 1,000 server " \
      "validation / 1,000 test (stratified by label, seed 0)" in line
  assert (len(task.x_train), len(task.x_val), len(task.x_test)) == (
      8000, 1000, 1000)
  assert np.abs(np.bincount(task.y_val) - counts / 10).max() <= 1
