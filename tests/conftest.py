"""Shared fixtures: tiny class pools and configs, and a guard against leaked
TFF workers."""

import os

from absl import flags
import numpy as np
import pytest

from fedmeta_tf.data import class_pool
from fedmeta_tf import parallel

# Binaries' main() reads flags; tests set them with absl's flagsaver.
flags.FLAGS.mark_as_parsed()

SHARED_OMNIGLOT = os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                               "data", "omniglot", "omniglot_28.npz")


@pytest.fixture(autouse=True)
def _restore_parallel_streams(monkeypatch):
  """A binary's main() sets the process-wide stream count
  (fedmeta_tf/parallel.py); each test starts from the sequential default."""
  monkeypatch.setattr(parallel, "_streams", 1)


def tiny_pool(num_classes=12, examples=8, size=28, channels=1, seed=0):
  """Random class pool; each class has its own mean so episodes are learnable."""
  rng = np.random.default_rng(seed)
  means = rng.integers(0, 256, size=(num_classes, 1, size, size, channels))
  noise = rng.integers(-30, 30, size=(num_classes, examples, size, size,
                                      channels))
  images = np.clip(means + noise, 0, 255).astype(np.uint8)
  return class_pool.make_class_pool(
      images, groups=[f"g{i % 3}" for i in range(num_classes)],
      split=[0 if i < num_classes * 2 // 3 else 1 for i in range(num_classes)])


@pytest.fixture
def omniglot_archive():
  if not os.path.isfile(SHARED_OMNIGLOT):
    pytest.skip("../shared/data/omniglot is absent (a user's clone has none)")
  return SHARED_OMNIGLOT


@pytest.fixture(scope="session", autouse=True)
def no_leaked_tff_workers():
  yield
  from fedmeta_tf.tff_process import contexts  # pylint: disable=g-import-not-at-top
  leaked = contexts.worker_processes()
  contexts.stop_workers()
  assert not leaked, f"TFF worker processes left running: {leaked}"
