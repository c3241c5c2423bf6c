"""Tests for fedmeta_tf.data.supervised_datasets (mocked TFDS, no network)."""

import json

import numpy as np
import pytest

from fedmeta_tf.data import supervised_datasets as sd
from fedmeta_tf.data.class_pool import DataError


def _fake_prepared(tmp_path, name, version):
  version_dir = tmp_path / name / version
  version_dir.mkdir(parents=True)
  (version_dir / "dataset_info.json").write_text(
      json.dumps({"name": name, "version": version}))


def test_missing_dataset_says_how_to_get_it(tmp_path):
  with pytest.raises(DataError) as e:
    sd.load_supervised("fashion_mnist", data_dir=str(tmp_path))
  message = str(e.value)
  assert "tfds build fashion_mnist" in message and str(tmp_path) in message
  assert "docs/datasets.md" in message and "\n" not in message


def test_unknown_name():
  with pytest.raises(ValueError, match="valid: mnist, fashion_mnist, cifar10"):
    sd.load_supervised("svhn")


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
