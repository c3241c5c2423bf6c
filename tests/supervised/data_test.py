"""The K-label split, the augmented class task and the array source."""

import numpy as np
import pytest

from fedmeta_tf.data.class_pool import DataError
from fedmeta_tf.supervised import data as data_lib
from tests import conftest


def test_label_skew_partition_gives_each_client_k_labels_and_covers_data():
  labels = np.repeat(np.arange(10), 30)
  indices, client_labels = data_lib.label_skew_partition(
      labels, num_clients=10, labels_per_client=3, num_labels=10, seed=0)
  assert client_labels.shape == (10, 3)
  for i, idx in enumerate(indices):
    assert set(labels[idx]) == set(client_labels[i])
  all_idx = np.concatenate(indices)
  assert len(all_idx) == len(labels) == len(set(all_idx))
  # Each label is held by exactly 3 clients and split equally (30 / 3).
  assert all(len(idx) == 30 for idx in indices)


def test_augmented_class_task_splits_drawers():
  pool = conftest.tiny_pool(num_classes=12, examples=20, size=28)
  task = data_lib.augmented_class_task(pool, num_labels=4, train_drawers=14,
                                       val_drawers=2, train_copies=3,
                                       test_copies=2, seed=1)
  assert task.x_train.shape == (4 * 14 * 3, 28, 28, 1)
  assert task.x_val.shape[0] == 4 * 2 * 2
  assert task.x_test.shape[0] == 4 * 4 * 2
  assert np.bincount(task.y_train).tolist() == [42] * 4
  # Copy 0 is the original image.
  np.testing.assert_array_equal(task.x_train[0],
                                pool.images[np.sort(np.random.default_rng(
                                    [1, 0x5C1A55]).choice(12, 4, False))[0], 0])


def test_from_arrays_carves_validation_from_test():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 255, [50, 8, 8]).astype(np.uint8)
  y = np.arange(50) % 5
  task = data_lib.SupervisedData.from_arrays(x, y, x, y, val_size=10)
  assert task.x_train.shape == (50, 8, 8, 1)
  assert len(task.x_val) == 10 and len(task.x_test) == 40
  assert task.num_labels == 5
  with pytest.raises(DataError, match="uint8"):
    data_lib.SupervisedData.from_arrays(x.astype(np.float32), y, x, y)
