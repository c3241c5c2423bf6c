"""A dataset's protocol in numbers: class counts and allocations (Section 3.2).

`describe_protocol` applies exactly what training applies
(`registry.load_dataset`, optionally the attack's class reservation, then
`protocol.build_meta_split` and `registry.augment_split`) and returns the
counts next to the paper's, for `binaries/describe_data.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from fedmeta_tf.data import protocol as protocol_lib
from fedmeta_tf.data import registry
from fedmeta_tf.data.class_pool import ClassPool

# Section 3.2: meta-train / meta-test classes, held out per class, reserved
# backdoor + target classes, examples per class.
PAPER = {
    registry.DatasetName.OMNIGLOT: dict(
        classes=1623, meta_train=1200, meta_test=418, heldout=5, reserved=5,
        rotations=4, clients=4, image="28x28x1"),
    registry.DatasetName.MINIIMAGENET: dict(
        classes=100, meta_train=64, meta_test=20, heldout=20, reserved=2,
        rotations=1, clients=4, image="84x84x3"),
    registry.DatasetName.CELEBA: dict(
        classes=2360, meta_train=2156, meta_test=200, heldout=5, reserved=2,
        rotations=1, clients=4, image="64x64x3"),
}
# Backdoor classes the attack reserves besides its one target (Section 3.2).
PAPER_BACKDOOR_CLASSES = {registry.DatasetName.OMNIGLOT: 4,
                          registry.DatasetName.MINIIMAGENET: 1,
                          registry.DatasetName.CELEBA: 1}

Reserve = Callable[[ClassPool], tuple[ClassPool, ClassPool]]


@dataclasses.dataclass(frozen=True)
class ProtocolCounts:
  """What the protocol yields."""

  pool_classes: int
  examples_per_class: int
  image_shape: tuple[int, ...]
  reserved_classes: int
  meta_train_classes_before_rotation: int
  meta_train_classes: int
  meta_train_examples: int
  heldout_examples: int
  meta_test_classes: int
  meta_test_examples: int
  client_classes: tuple[int, ...]


def protocol_counts(pool: ClassPool, name: registry.DatasetName, *,
                    num_clients: int, seed: int,
                    reserve: Optional[Reserve] = None,
                    protocol: Optional[registry.Protocol] = None
                    ) -> ProtocolCounts:
  """Applies `protocol` (None: the paper's of `name`) to `pool`, counts."""
  reserved = 0
  if reserve is not None:
    pool, reserved_pool = reserve(pool)
    reserved = reserved_pool.num_classes
  proto = protocol or registry.PROTOCOLS[name]
  split = protocol_lib.split_by_protocol(
      pool, proto, dataset=name.value, num_clients=num_clients, seed=seed,
      reserved=reserved)
  rotations = len(protocol_lib.ROTATIONS) if proto.rotate else 1
  return ProtocolCounts(
      pool_classes=pool.num_classes + reserved,
      examples_per_class=pool.examples_per_class,
      image_shape=pool.image_shape, reserved_classes=reserved,
      meta_train_classes_before_rotation=split.meta_train.num_classes //
      rotations,
      meta_train_classes=split.meta_train.num_classes,
      meta_train_examples=split.meta_train.examples_per_class,
      heldout_examples=split.meta_train_heldout.examples_per_class,
      meta_test_classes=split.meta_test.num_classes // rotations,
      meta_test_examples=split.meta_test.examples_per_class,
      client_classes=tuple(len(c) for c in split.client_classes))


def format_counts(counts: ProtocolCounts, name: registry.DatasetName
                  ) -> list[str]:
  """Lines: ours, and the paper's where it states a number."""
  paper = PAPER.get(name, {})
  proto = registry.PROTOCOLS[name]
  rot = len(protocol_lib.ROTATIONS) if proto.rotate else 1
  per_client = (counts.meta_train_classes_before_rotation /
                len(counts.client_classes))
  def vs(key):
    return f" (paper {paper[key]})" if key in paper else ""
  shape = "x".join(str(d) for d in counts.image_shape)
  lines = [
      f"dataset: {name.value}",
      f"pool: {counts.pool_classes} classes{vs('classes')} x "
      f"{counts.examples_per_class} examples, image {shape}{vs('image')}",
      f"reserved for the attack (target + backdoor): "
      f"{counts.reserved_classes}{vs('reserved')}",
      f"meta-train: {counts.meta_train_classes_before_rotation} classes"
      f"{vs('meta_train')}"
      + (f", x{rot} rotations = {counts.meta_train_classes} classes"
         if rot > 1 else ""),
      f"  held out per class: {counts.heldout_examples}{vs('heldout')}; "
      f"training examples per class: {counts.meta_train_examples}"
      + (f" (x{proto.augment_factor} augmentation)"
         if proto.augment_factor > 1 else ""),
      f"  split among {len(counts.client_classes)} clients"
      f"{' (paper ' + str(paper['clients']) + ')' if paper else ''}: "
      f"{list(counts.client_classes)} classes"
      + (f" of the {counts.meta_train_classes} rotated classes (each "
         f"rotation its own class; {counts.meta_train_classes_before_rotation}"
         f" / {len(counts.client_classes)} = "
         f"{per_client:g}"
         " unrotated classes' worth per client)" if rot > 1 else ""),
      f"meta-test: {counts.meta_test_classes} classes{vs('meta_test')}"
      + (f", x{rot} rotations = {counts.meta_test_classes * rot} classes"
         if rot > 1 else "")
      + f", {counts.meta_test_examples} examples each",
  ]
  return lines


def class_count_summary(pool: ClassPool) -> str:
  """Classes per original split (background/evaluation/unspecified)."""
  values, counts = np.unique(pool.split, return_counts=True)
  label = {0: "background", 1: "evaluation", -1: "unspecified"}
  return ", ".join(f"{label.get(int(v), v)} {c}"
                   for v, c in zip(values, counts))
