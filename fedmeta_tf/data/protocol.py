"""The few-shot protocol: meta-train/meta-test classes, held-out examples,
x4 rotations and the partition of meta-training classes among M clients.

Main paper, Section 3.3 (Omniglot): 1200 classes for meta-training, split
among the 4 users, the rest for meta-testing; 5 examples of every
meta-training class held out for validation; classes augmented x4 by
rotations (each rotation is a new class, as in Vinyals et al. and Reptile).

Every choice is a pure function of the seed passed in.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from fedmeta_tf.data import class_pool as class_pool_lib
from fedmeta_tf.data.class_pool import ClassPool, DataError

ROTATIONS = (0, 1, 2, 3)  # multiples of 90 degrees


@dataclasses.dataclass(frozen=True)
class MetaSplit:
  """A dataset split for federated meta-learning.

  Attributes:
    meta_train: meta-training classes, training examples only.
    meta_train_heldout: the same classes' held-out examples (same order).
    meta_test: classes never used in meta-training, all examples.
    client_classes: for each client, indices into `meta_train` classes.
  """

  meta_train: ClassPool
  meta_train_heldout: ClassPool
  meta_test: ClassPool
  client_classes: tuple[np.ndarray, ...]

  def client_pool(self, client: int) -> np.ndarray:
    """uint8 [C_i, S, H, W, ch]: client `client`'s own training classes."""
    return self.meta_train.images[self.client_classes[client]]

  def describe(self) -> str:
    sizes = [len(c) for c in self.client_classes]
    return (f"meta-train {self.meta_train.num_classes} classes x "
            f"{self.meta_train.examples_per_class} examples "
            f"(+{self.meta_train_heldout.examples_per_class} held out), "
            f"meta-test {self.meta_test.num_classes} classes x "
            f"{self.meta_test.examples_per_class}, clients {sizes}")


def rotate_classes(pool: ClassPool, rotations=ROTATIONS) -> ClassPool:
  """Each class becomes len(rotations) classes, rotated by k * 90 degrees."""
  if pool.images.shape[2] != pool.images.shape[3]:
    raise DataError(f"rotation augmentation needs square images, got "
                    f"{pool.image_shape}")
  images = np.concatenate(
      [np.rot90(pool.images, k=k, axes=(2, 3)) for k in rotations], axis=0)
  def tile(values):
    return tuple(f"{v}" for v in values) * len(rotations)
  names = tuple(f"{n}@rot{90 * k}" for k in rotations for n in pool.names)
  return ClassPool(images=np.ascontiguousarray(images), names=names,
                   groups=tile(pool.groups),
                   split=np.tile(pool.split, len(rotations)))


def split_meta_train_test(pool: ClassPool, *, num_meta_train: Optional[int],
                          seed: int) -> tuple[ClassPool, ClassPool]:
  """Splits classes into meta-train and meta-test.

  Args:
    num_meta_train: that many classes, drawn at random (the Reptile/papers'
      protocol: 1200 of Omniglot's); None uses the pool's own split field
      (0 = meta-train, 1 = meta-test), e.g. background/evaluation alphabets.
  """
  if num_meta_train is None:
    train = np.flatnonzero(pool.split == class_pool_lib.SPLIT_BACKGROUND)
    test = np.flatnonzero(pool.split == class_pool_lib.SPLIT_EVALUATION)
    if len(train) == 0 or len(test) == 0:
      raise DataError("the class pool has no background/evaluation split field; "
                      "give a number of meta-training classes instead")
  else:
    if not 0 < num_meta_train < pool.num_classes:
      raise ValueError(f"number of meta-training classes must be in "
                       f"[1, {pool.num_classes - 1}], got {num_meta_train}")
    order = np.random.default_rng([seed, 0x5EED]).permutation(pool.num_classes)
    train, test = np.sort(order[:num_meta_train]), np.sort(order[num_meta_train:])
  return pool.select(train), pool.select(test)


def hold_out_examples(pool: ClassPool, heldout: int, *,
                      seed: int) -> tuple[ClassPool, ClassPool]:
  """Splits every class's examples into (training, held-out) at random."""
  s = pool.examples_per_class
  if not 0 <= heldout < s:
    raise ValueError(f"held-out examples per class must be in [0, {s - 1}], "
                     f"got {heldout}")
  rng = np.random.default_rng([seed, 0x401D])
  order = np.argsort(rng.random((pool.num_classes, s)), axis=1)
  def take(idx):
    return dataclasses.replace(
        pool, images=np.take_along_axis(
            pool.images, idx[:, :, None, None, None], axis=1))
  return take(order[:, heldout:]), take(order[:, :heldout])


def partition_classes(num_classes: int, num_clients: int, *,
                      seed: int) -> tuple[np.ndarray, ...]:
  """Splits class indices among clients: disjoint, sizes differ by at most 1."""
  if num_clients <= 0:
    raise ValueError(f"num_clients must be positive, got {num_clients}")
  if num_clients > num_classes:
    raise ValueError(f"cannot split {num_classes} classes among {num_clients} "
                     "clients")
  order = np.random.default_rng([seed, 0xC11E]).permutation(num_classes)
  return tuple(np.sort(part) for part in np.array_split(order, num_clients))


def build_meta_split(pool: ClassPool, *, num_clients: int,
                     num_meta_train: Optional[int], heldout_per_class: int,
                     rotate: bool, seed: int) -> MetaSplit:
  """Applies the whole protocol: class split, held-out examples, rotations,
  client partition (rotations of a class stay on the same side of the split
  and become independent classes, possibly of different clients)."""
  train, test = split_meta_train_test(pool, num_meta_train=num_meta_train,
                                      seed=seed)
  train, heldout = hold_out_examples(train, heldout_per_class, seed=seed)
  if rotate:
    train, heldout, test = (rotate_classes(p) for p in (train, heldout, test))
  return MetaSplit(meta_train=train, meta_train_heldout=heldout, meta_test=test,
                   client_classes=partition_classes(train.num_classes,
                                                    num_clients, seed=seed))
