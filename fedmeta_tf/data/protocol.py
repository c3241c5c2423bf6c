"""The few-shot protocol: meta-train/meta-test classes, held-out examples,
x4 rotations and the partition of meta-training classes among M clients.

Main paper, Section 3.3 (Omniglot): 1200 classes for meta-training, split
among the 4 users, the rest for meta-testing; 5 examples of every
meta-training class held out for validation; classes augmented x4 by
rotations (each rotation is a new class, as in Vinyals et al. and Reptile).
The sizes are `registry.Protocol`'s: the paper's per dataset, or the
binaries' --num_meta_train / --num_meta_test / --examples_per_class /
--heldout_per_class; a pool too small for them is refused in one line
(`too_few_classes`).

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


def too_few_classes(dataset: str, count: int, *, qualify: str,
                    meta_train: Optional[int], meta_test: Optional[int],
                    reserved: int = 0) -> Optional[DataError]:
  """The one-line error when `count` classes are fewer than the protocol needs.

  Args:
    dataset: its name, first in the line.
    count: classes that qualify (`qualify` says how, e.g. "(>= 30 images)").
    meta_train, meta_test: the protocol's (flags' or paper's) sizes; None:
      all that are left (at least 1).
    reserved: classes the attack reserves first (main paper, Section 3.3).

  Returns:
    None when there are enough, else the DataError naming the counts and the
    flags that set a smaller protocol (Sections 3.2 and 3.3).
  """
  parts = [(meta_train or 1, "meta-training"), (meta_test or 1, "meta-testing"),
           (reserved, "reserved for the attack")]
  needed = sum(n for n, _ in parts)
  if count >= needed:
    return None
  at_least = "at least " if meta_train is None or meta_test is None else ""
  terms = " + ".join(f"{n:,} {what}" for n, what in parts if n)
  return DataError(
      f"{dataset}: {count:,} {qualify}, the protocol needs {at_least}"
      f"{needed:,} ({terms}); pass --num_meta_train=... --num_meta_test=... "
      "for a smaller protocol")


def split_meta_train_test(pool: ClassPool, *, num_meta_train: Optional[int],
                          seed: int, num_meta_test: Optional[int] = None,
                          own_split: Optional[bool] = None,
                          dataset: str = "dataset", reserved: int = 0
                          ) -> tuple[ClassPool, ClassPool]:
  """Splits classes into meta-train and meta-test.

  Args:
    num_meta_train: that many classes, drawn at random (the Reptile/papers'
      protocol: 1200 of Omniglot's), or from the pool's own meta-training
      classes (`own_split`); None: all of those.
    seed: the run's seed.
    num_meta_test: that many of the classes left (or of the pool's own
      meta-testing classes); None: all of them.
    own_split: use the pool's split field (0 = meta-train, 1 = meta-test),
      e.g. background/evaluation alphabets; None: when `num_meta_train` is.
    dataset, reserved: for the too-few-classes line (`too_few_classes`).

  Raises:
    DataError: too few classes, one line naming the flags to change.
  """
  own_split = num_meta_train is None if own_split is None else own_split
  rng = np.random.default_rng([seed, 0x5EED])
  if own_split:
    train = np.flatnonzero(pool.split == class_pool_lib.SPLIT_BACKGROUND)
    test = np.flatnonzero(pool.split == class_pool_lib.SPLIT_EVALUATION)
    if len(train) == 0 or len(test) == 0:
      raise DataError("the class pool has no background/evaluation split field; "
                      "give a number of meta-training classes instead")
    for side, count, want in (("meta-training", len(train), num_meta_train),
                              ("meta-testing", len(test), num_meta_test)):
      if want is not None and want > count:
        raise DataError(
            f"{dataset}: its own split has {count:,} {side} classes, the "
            f"protocol needs {want:,}; pass --num_meta_train=... "
            "--num_meta_test=... for a smaller protocol")
    train = np.sort(rng.permutation(train)[:num_meta_train])
    test = np.sort(rng.permutation(test)[:num_meta_test])
  else:
    error = too_few_classes(
        dataset, pool.num_classes + reserved, qualify="classes qualify",
        meta_train=num_meta_train, meta_test=num_meta_test, reserved=reserved)
    if error:
      raise error
    order = rng.permutation(pool.num_classes)
    rest = order[num_meta_train:]
    train, test = np.sort(order[:num_meta_train]), np.sort(rest[:num_meta_test])
  return pool.select(train), pool.select(test)


def take_examples(pool: ClassPool, count: Optional[int], *, seed: int,
                  dataset: str = "dataset") -> ClassPool:
  """`count` examples of every class, drawn at random (None: all)."""
  s = pool.examples_per_class
  if count is None or count == s:
    return pool
  if count > s:
    raise DataError(f"{dataset}: its classes have {s:,} examples, the "
                    f"protocol takes {count:,}; pass --examples_per_class="
                    f"{s} or fewer")
  order = np.argsort(np.random.default_rng([seed, 0xE4A3]).random(
      (pool.num_classes, s)), axis=1)[:, :count]
  return dataclasses.replace(pool, images=np.take_along_axis(
      pool.images, order[:, :, None, None, None], axis=1))


def hold_out_examples(pool: ClassPool, heldout: int, *,
                      seed: int) -> tuple[ClassPool, ClassPool]:
  """Splits every class's examples into (training, held-out) at random."""
  s = pool.examples_per_class
  if not 0 <= heldout < s:
    raise ValueError(f"held-out examples per class (--heldout_per_class) must "
                     f"be in [0, {s - 1}] for classes of {s} examples, got "
                     f"{heldout}")
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
                     rotate: bool, seed: int,
                     num_meta_test: Optional[int] = None,
                     examples_per_class: Optional[int] = None,
                     own_split: Optional[bool] = None,
                     dataset: str = "dataset", reserved: int = 0) -> MetaSplit:
  """Applies the whole protocol (main paper, Sections 3.2 and 3.3): class
  split, examples per class, held-out examples, rotations, client partition
  (rotations of a class stay on the same side of the split and become
  independent classes, possibly of different clients). The sizes are
  `registry.Protocol`'s (`split_by_protocol`)."""
  train, test = split_meta_train_test(
      pool, num_meta_train=num_meta_train, num_meta_test=num_meta_test,
      own_split=own_split, seed=seed, dataset=dataset, reserved=reserved)
  train, test = (take_examples(p, examples_per_class, seed=seed,
                               dataset=dataset) for p in (train, test))
  train, heldout = hold_out_examples(train, heldout_per_class, seed=seed)
  if rotate:
    train, heldout, test = (rotate_classes(p) for p in (train, heldout, test))
  return MetaSplit(meta_train=train, meta_train_heldout=heldout, meta_test=test,
                   client_classes=partition_classes(train.num_classes,
                                                    num_clients, seed=seed))


def split_by_protocol(pool: ClassPool, protocol, *, dataset: str,
                      num_clients: int, seed: int,
                      reserved: int = 0) -> MetaSplit:
  """`build_meta_split` with a `registry.Protocol`'s sizes, then its
  augmentation (CelebA x6, Section 3.2): the one way every experiment splits
  its data. `reserved`: classes the attack took out of `pool` first."""
  from fedmeta_tf.data import registry  # pylint: disable=g-import-not-at-top
  split = build_meta_split(
      pool, num_clients=num_clients, num_meta_train=protocol.num_meta_train,
      num_meta_test=protocol.num_meta_test,
      examples_per_class=protocol.examples_per_class,
      heldout_per_class=protocol.heldout_per_class, rotate=protocol.rotate,
      own_split=protocol.own_split, seed=seed, dataset=dataset,
      reserved=reserved)
  return registry.augment_split(dataset, split, protocol)
