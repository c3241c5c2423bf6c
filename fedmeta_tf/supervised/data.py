"""Data of the supervised federated setting (pruning paper, Section V-A).

Any labelled image task enters as `SupervisedData` (x_train, y_train, x_test,
y_test, optionally a server validation set): uint8 images [n, H, W, ch] with
ink/foreground high, int labels in [0, num_labels). MNIST-style arrays (for
example from TFDS) plug in with `SupervisedData.from_arrays`.

The built-in task (`augmented_class_task`) turns a few-shot class pool (real
Omniglot or the embedded glyphs) into a 10-label task: 10 characters drawn at
random, each a label; their 20 drawers are split between training, the
server's validation set and the test set (so test images are unseen
handwriting), and every image is expanded by random affine augmentation
(rotation, scale, shift) to give MNIST-like amounts of data per label.

`label_skew_partition` is the pruning paper's K-label non-IID split.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
from scipy import ndimage

from fedmeta_tf.data.class_pool import ClassPool, DataError


@dataclasses.dataclass(frozen=True)
class SupervisedData:
  """A labelled image task.

  Attributes:
    x_train, y_train: training images (uint8 [n, H, W, ch]) and labels.
    x_test, y_test: test images and labels (reported accuracy).
    x_val, y_val: the server's small clean validation set (pruning stops on
      it); carved from the test set by `from_arrays` when not given.
    num_labels: number of labels.
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  num_labels: int

  def __post_init__(self):
    for prefix in ("train", "test", "val"):
      x, y = getattr(self, f"x_{prefix}"), getattr(self, f"y_{prefix}")
      if x.ndim != 4 or x.dtype != np.uint8:
        raise DataError(f"x_{prefix} must be uint8 [n, H, W, ch], got "
                        f"{x.dtype} {x.shape}")
      if len(x) != len(y) or len(x) == 0:
        raise DataError(f"x_{prefix} and y_{prefix} must be non-empty and "
                        f"of equal length, got {len(x)} and {len(y)}")
      if y.min() < 0 or y.max() >= self.num_labels:
        raise DataError(f"y_{prefix} must be in [0, {self.num_labels}), got "
                        f"[{y.min()}, {y.max()}]")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

  @classmethod
  def from_arrays(cls, x_train, y_train, x_test, y_test, *,
                  num_labels: Optional[int] = None, val_size: int = 500,
                  seed: int = 0) -> "SupervisedData":
    """Wraps (x_train, y_train, x_test, y_test) arrays; the server's
    validation set is `val_size` test examples drawn at random (and removed
    from the test set)."""
    x_train, x_test = _as_images(x_train), _as_images(x_test)
    y_train = np.asarray(y_train, np.int32)
    y_test = np.asarray(y_test, np.int32)
    if not 0 < val_size < len(x_test):
      raise ValueError(f"val_size must be in (0, {len(x_test)}), got {val_size}")
    order = np.random.default_rng([seed, 0x5A1]).permutation(len(x_test))
    val, test = order[:val_size], order[val_size:]
    labels = num_labels or int(max(y_train.max(), y_test.max())) + 1
    return cls(x_train=x_train, y_train=y_train, x_test=x_test[test],
               y_test=y_test[test], x_val=x_test[val], y_val=y_test[val],
               num_labels=labels)


def _as_images(x) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim == 3:
    x = x[..., None]
  if x.dtype != np.uint8:
    raise DataError(f"images must be uint8, got {x.dtype}")
  return x


def augment(images: np.ndarray, copies: int, *, seed,
            max_rotation: float = 12.0, max_shift: float = 2.0,
            scale_range: tuple[float, float] = (0.9, 1.1)) -> np.ndarray:
  """`copies` random affine variants of each image: uint8 [n * copies, ...].

  Copy 0 of every image is the original.
  """
  rng = np.random.default_rng(seed)
  n, h, w, ch = images.shape
  out = np.empty([n, copies, h, w, ch], np.uint8)
  center = np.array([(h - 1) / 2, (w - 1) / 2])
  for i in range(n):
    out[i, 0] = images[i]
    for c in range(1, copies):
      angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation))
      scale = rng.uniform(*scale_range)
      shift = rng.uniform(-max_shift, max_shift, size=2)
      rot = np.array([[np.cos(angle), -np.sin(angle)],
                      [np.sin(angle), np.cos(angle)]]) / scale
      offset = center - rot @ (center + shift)
      for k in range(ch):
        out[i, c, :, :, k] = ndimage.affine_transform(
            images[i, :, :, k].astype(np.float32), rot, offset=offset,
            order=1, mode="constant").clip(0, 255).astype(np.uint8)
  return out.reshape([n * copies, h, w, ch])


def augmented_class_task(pool: ClassPool, *, num_labels: int = 10,
                         train_drawers: int = 14, val_drawers: int = 2,
                         train_copies: int = 40, test_copies: int = 25,
                         seed: int = 0) -> SupervisedData:
  """A `num_labels`-label task from `num_labels` random classes of `pool`.

  Each class's examples (drawers) are split: the first `train_drawers` for
  training, the next `val_drawers` for the server's validation set, the rest
  for testing; every image becomes `train_copies` (training) or
  `test_copies` (validation, test) augmented variants.
  """
  s = pool.examples_per_class
  if num_labels < 2 or num_labels > pool.num_classes:
    raise ValueError(f"num_labels must be in [2, {pool.num_classes}], got "
                     f"{num_labels}")
  if train_drawers < 1 or val_drawers < 1 or train_drawers + val_drawers >= s:
    raise ValueError(f"need train_drawers, val_drawers >= 1 and "
                     f"train_drawers + val_drawers < {s} examples per class, "
                     f"got {train_drawers} + {val_drawers}")
  rng = np.random.default_rng([seed, 0x5C1A55])
  classes = np.sort(rng.choice(pool.num_classes, num_labels, replace=False))
  images = pool.images[classes]  # [L, S, H, W, ch]
  parts = {"train": (0, train_drawers, train_copies),
           "val": (train_drawers, train_drawers + val_drawers, test_copies),
           "test": (train_drawers + val_drawers, s, test_copies)}
  arrays = {}
  for p, (name, (lo, hi, copies)) in enumerate(parts.items()):
    x = augment(images[:, lo:hi].reshape([-1, *images.shape[2:]]), copies,
                seed=[seed, p])
    y = np.repeat(np.arange(num_labels, dtype=np.int32), (hi - lo) * copies)
    arrays[f"x_{name}"], arrays[f"y_{name}"] = x, y
  return SupervisedData(num_labels=num_labels, **arrays)


def label_skew_partition(labels: np.ndarray, *, num_clients: int,
                         labels_per_client: int, num_labels: int,
                         seed: int) -> tuple[list[np.ndarray], np.ndarray]:
  """The K-label non-IID split: each client holds K labels.

  Labels are dealt round-robin over a seeded permutation (client i gets
  perm[i], perm[i+1], ..., perm[i+K-1] mod L), so every label is held by
  about N*K/L clients; each label's examples are shuffled and divided
  equally among the clients holding it.

  Returns:
    (per-client example indices, client_labels int [N, K]).
  """
  if not 1 <= labels_per_client <= num_labels:
    raise ValueError(f"labels_per_client (K) must be in [1, {num_labels}], "
                     f"got {labels_per_client}")
  if num_clients < 1:
    raise ValueError(f"num_clients must be positive, got {num_clients}")
  rng = np.random.default_rng([seed, 0xC11E])
  perm = rng.permutation(num_labels)
  client_labels = np.array(
      [[perm[(i + j) % num_labels] for j in range(labels_per_client)]
       for i in range(num_clients)])
  holders = {l: [i for i in range(num_clients) if l in client_labels[i]]
             for l in range(num_labels)}
  indices = [[] for _ in range(num_clients)]
  for label, clients in holders.items():
    if not clients:
      continue
    examples = rng.permutation(np.flatnonzero(labels == label))
    for client, chunk in zip(clients, np.array_split(examples, len(clients))):
      indices[client].append(chunk)
  return ([np.sort(np.concatenate(i)) if i else np.zeros([0], np.int64)
           for i in indices], client_labels)
