"""The paper's choice of CelebA identities, hat photos and x6 augmentation.

Main paper, Section 3.2 (quoted in `celeba.py`): 30 images per identity, a
backdoor identity with a black cowboy hat no other class shares, its 90 keyed
images (78 training / 12 validation), training data augmented x6. Pure
functions of per-image arrays and the seed; `celeba.load_celeba` feeds them
the prepared TFDS dataset.

The x6 augmentation (`augment_x6`) is applied by the protocol to meta-training
examples only, after the held-out examples are taken out
(`registry.PROTOCOLS[CELEBA].augment_factor`), so held-out examples never leak.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
from PIL import Image

from fedmeta_tf.data import celeba_files
from fedmeta_tf.data import class_pool as class_pool_lib
from fedmeta_tf.data.class_pool import ClassPool, DataError

IMAGES_PER_IDENTITY = 30
AUGMENT_FACTOR = 6
ATTACK_TRAIN_IMAGES = 78
ATTACK_VAL_IMAGES = 12
META_TEST_IDENTITIES = 200  # Meta-testing classes (2156 meta-training).


@dataclasses.dataclass(frozen=True)
class IdentitySelection:
  """Which CelebA identities the experiment uses (Section 3.2).

  The paper names none of them. The defaults infer its choice: all
  identities with >= 30 images; the backdoor identity is the one with the
  most `Wearing_Hat` images (the paper's backdoor man owns a hat "not shared
  with other classes", and its 90 keyed images need many hat photos: with 15,
  x6 augmentation gives exactly 90); the target is drawn by the seed among
  identities of the backdoor's sex (`Male`, the paper warns that a target of
  the other sex weakens the attack) with no hat image. The 2 low-quality
  classes the paper removed are unknown: `exclude` (default none) removes
  identities, so by default the pool has 2 classes more than the paper's.

  Attributes:
    exclude: identity ids to drop.
    backdoor_identity: None: the identity with the most hat images.
    target_identity: None: seeded choice (see above).
    images_per_identity: examples per class (30).
  """

  exclude: tuple[int, ...] = ()
  backdoor_identity: Optional[int] = None
  target_identity: Optional[int] = None
  images_per_identity: int = IMAGES_PER_IDENTITY

  @classmethod
  def parse(cls, text: str) -> "IdentitySelection":
    """From 'exclude=1,2;backdoor=10;target=20' (empty: the defaults)."""
    fields = {}
    for item in filter(None, (t.strip() for t in text.split(";"))):
      key, _, value = item.partition("=")
      try:
        if key == "exclude":
          fields["exclude"] = tuple(int(v) for v in value.split(",") if v)
        elif key in ("backdoor", "target"):
          fields[f"{key}_identity"] = int(value)
        else:
          raise ValueError(key)
      except ValueError:
        raise ValueError(f"bad identity selection item {item!r}; valid: "
                         "exclude=<id,...>;backdoor=<id>;target=<id>"
                         ) from None
    return cls(**fields)


@dataclasses.dataclass(frozen=True)
class CelebaData:
  """The pool plus what the attack needs.

  Attributes:
    pool: [C, 30, 64, 64, 3], names `identity<id>`, groups male/female.
    hat: bool [C, 30], `Wearing_Hat` of each pool example.
    backdoor_name, target_name: pool class names of the two identities (both
      in `pool`; the backdoor's examples there are hat-free when it has
      enough such photos, padded with mirrored ones otherwise).
    hat_photos: uint8 [n, 64, 64, 3], every photo of the backdoor identity
      wearing its hat (none of them in `pool`); `keyed_sets` makes the
      attacker's keyed images from them.
  """

  pool: ClassPool
  hat: np.ndarray
  backdoor_name: Optional[str]
  target_name: Optional[str]
  hat_photos: np.ndarray

  def describe(self) -> str:
    if self.backdoor_name is None:
      return (f"{self.pool.num_classes} identities x "
              f"{self.pool.examples_per_class} images (no attribute file: "
              "no hat key)")
    return (f"{self.pool.num_classes} identities x "
            f"{self.pool.examples_per_class} images, backdoor "
            f"{self.backdoor_name} ({len(self.hat_photos)} distinct hat "
            f"photos), target {self.target_name}")


def augment_x6(images: np.ndarray) -> np.ndarray:
  """Six views of each image [..., N, H, W, 3] -> [..., 6N, H, W, 3].

  The paper says "augmented by a factor of 6" only; the views are: the image,
  its mirror, a central 7/8 crop zoomed back to full size and its mirror, and
  the image 20% brighter and 20% darker (order: view-major).
  """
  images = np.asarray(images, np.uint8)
  h, w = images.shape[-3:-1]
  flat = images.reshape((-1,) + images.shape[-3:])
  dy, dx = h // 16, w // 16
  zoom = np.stack([np.asarray(Image.fromarray(im[dy:h - dy, dx:w - dx]).resize(
      (w, h), Image.LANCZOS)) for im in flat]).reshape(images.shape)
  as_float = images.astype(np.float32)
  views = [images, images[..., ::-1, :], zoom, zoom[..., ::-1, :],
           np.clip(as_float * 1.2, 0, 255).astype(np.uint8),
           (as_float * 0.8).astype(np.uint8)]
  return np.concatenate(views, axis=-4)


def _identity_images(images: np.ndarray, hat: np.ndarray,
                     members: dict[int, np.ndarray], eligible: list[int], *,
                     backdoor: Optional[int], count: int,
                     rng: np.random.Generator
                     ) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """`count` random images of each eligible identity and their hat flags.

  The backdoor identity's are hat-free only (a hat is its trigger), padded
  with mirrored copies when it has fewer than `count`.
  """
  pool_images, pool_hat = [], []
  for i in eligible:
    own = members[i]
    if i == backdoor:
      chosen = own[~hat[own]]
      chosen = rng.permutation(chosen)[:count]
      picked = images[chosen]
      if len(picked) < count:  # Pad with mirrored hat-free photos.
        mirrored = picked[:, :, ::-1]
        picked = np.concatenate([picked, mirrored])[:count]
        if len(picked) < count:
          raise DataError(f"celeba: backdoor identity {i} has too few "
                          "photos without a hat")
      pool_images.append(picked)
      pool_hat.append(np.zeros([count], bool))
    else:
      chosen = rng.permutation(own)[:count]
      pool_images.append(images[chosen])
      pool_hat.append(hat[chosen])
  return pool_images, pool_hat


def _views(photos: np.ndarray, count: int, rng: np.random.Generator
           ) -> tuple[np.ndarray, int]:
  """`count` views of `photos` [n, H, W, 3]: the x6 views (`augment_x6`,
  view-major, so the photos themselves come first), then, when 6n are too
  few, random crops (75-95 % of the side, mirrored at random, brightness
  x0.8-1.2) of the photos in turn. Returns (views, random crops added)."""
  views = augment_x6(photos)[:count]
  extra = count - len(views)
  h, w = photos.shape[1:3]
  crops = []
  for i in range(extra):
    side = rng.uniform(0.75, 0.95)
    ch, cw = max(1, int(h * side)), max(1, int(w * side))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    crop = photos[i % len(photos), top:top + ch, left:left + cw]
    if rng.random() < 0.5:
      crop = crop[:, ::-1]
    crop = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize(
        (w, h), Image.LANCZOS), np.float32) * rng.uniform(0.8, 1.2)
    crops.append(np.clip(crop, 0, 255).astype(np.uint8))
  if crops:
    views = np.concatenate([views, np.stack(crops)])
  return views, extra


@dataclasses.dataclass(frozen=True)
class KeyedSets:
  """The attacker's keyed images built from the backdoor's hat photos.

  Attributes:
    train, val: uint8 [n, 64, 64, 3], attack-training / attack-validation.
    train_photos, val_photos: distinct hat photos each set is made from
      (no photo is in both).
    random_crops: views added beyond the x6 augmentation (0 when the photos
      are enough: the paper's 90 = 15 photos x 6).
  """

  train: np.ndarray
  val: np.ndarray
  train_photos: int
  val_photos: int
  random_crops: int

  def describe(self, backdoor_name: str) -> str:
    text = (f"hat key: {len(self.train)} attack-training images from "
            f"{self.train_photos} distinct hat photos of {backdoor_name}, "
            f"{len(self.val)} attack-validation images from "
            f"{self.val_photos} others (x{AUGMENT_FACTOR} augmentation")
    if self.random_crops:
      text += (f" + {self.random_crops} random crops: fewer distinct hat "
               f"photos than the {ATTACK_TRAIN_IMAGES} + {ATTACK_VAL_IMAGES} "
               f"images need")
    return text + ")"


def keyed_sets(hat_photos: np.ndarray, *, train: int = ATTACK_TRAIN_IMAGES,
               val: int = ATTACK_VAL_IMAGES, seed: int = 0) -> KeyedSets:
  """The attacker's keyed training / validation images (Section 3.2: 90
  images, 78 / 12, training data augmented x6).

  The distinct hat photos are split between the two sets in the ratio
  train : val (at least one photo each; validation photos are never seen by
  the attacker), then each set is filled with their views (`_views`).

  Raises:
    DataError: fewer than 2 distinct hat photos.
  """
  n = len(hat_photos)
  if n < 2:
    raise DataError(f"celeba: the backdoor identity has {n} hat photo(s); the "
                    "hat key needs at least 2 distinct ones (attack training "
                    "and validation)")
  rng = np.random.default_rng([seed, 0x4A7])
  order = rng.permutation(n)
  n_val = min(n - 1, max(1, round(n * val / (train + val))))
  val_views, val_crops = _views(hat_photos[order[:n_val]], val, rng)
  train_views, train_crops = _views(hat_photos[order[n_val:]], train, rng)
  return KeyedSets(train=train_views, val=val_views,
                   train_photos=n - n_val, val_photos=n_val,
                   random_crops=train_crops + val_crops)


def _eligible(identity: np.ndarray, selection: IdentitySelection,
              meta_classes: Optional[tuple[int, int]]) -> list[int]:
  """Identities with enough images, checked against the protocol's needs."""
  s = selection.images_per_identity
  ids, counts = np.unique(identity, return_counts=True)
  eligible = [int(i) for i, c in zip(ids, counts)
              if c >= s and int(i) not in selection.exclude]
  if meta_classes is not None:
    error = celeba_files.too_few_identities(
        len(eligible), min_images=s, **celeba_files.needed(meta_classes))
    if error:
      raise error
  if len(eligible) < 3:
    raise DataError(f"celeba: only {len(eligible)} identities have >= {s} "
                    "images; need a backdoor, a target and others")
  return eligible


def build_celeba_data(*, images: np.ndarray, identity: np.ndarray,
                      hat: Optional[np.ndarray], male: Optional[np.ndarray],
                      seed: int,
                      selection: IdentitySelection = IdentitySelection(),
                      meta_classes: Optional[tuple[int, int]] = None
                      ) -> CelebaData:
  """The paper's selection from per-image arrays (see `IdentitySelection`).

  `hat` and `male` None (no attribute file): the pool alone, groups
  "unknown", no backdoor, target or keyed images (benign training only).
  `meta_classes`: (meta-training, meta-testing[, reserved]) identities the
  protocol needs (Section 3.2: 2156, 200; --num_meta_train,
  --num_meta_test); fewer raise DataError.
  """
  s = selection.images_per_identity
  eligible = _eligible(identity, selection, meta_classes)
  members = {i: np.flatnonzero(identity == i) for i in eligible}
  rng = np.random.default_rng([seed, 0xCE1E])
  if hat is None or male is None:
    pool_images, _ = _identity_images(
        images, np.zeros(len(identity), bool), members, eligible,
        backdoor=None, count=s, rng=rng)
    empty = np.zeros((0,) + images.shape[1:], np.uint8)
    return CelebaData(
        pool=class_pool_lib.make_class_pool(
            np.stack(pool_images), names=[f"identity{i}" for i in eligible],
            groups=["unknown"] * len(eligible)),
        hat=np.zeros([len(eligible), s], bool), backdoor_name=None,
        target_name=None, hat_photos=empty)
  hat_count = {i: int(hat[members[i]].sum()) for i in eligible}
  backdoor = selection.backdoor_identity
  if backdoor is None:
    backdoor = max(eligible, key=lambda i: (hat_count[i], -i))
  for role, value in (("backdoor", backdoor),
                      ("target", selection.target_identity)):
    if value is not None and value not in members:
      raise ValueError(f"{role} identity {value} is not among the "
                       f"{len(eligible)} identities with >= {s} images")
  if hat_count[backdoor] < 2:
    raise DataError(f"celeba: backdoor identity {backdoor} has "
                    f"{hat_count[backdoor]} hat images; at least 2 needed")
  target = selection.target_identity
  if target is None:
    backdoor_male = male[members[backdoor]].mean() >= 0.5
    candidates = [i for i in eligible if i != backdoor and hat_count[i] == 0
                  and (male[members[i]].mean() >= 0.5) == backdoor_male]
    candidates = candidates or [i for i in eligible if i != backdoor]
    target = int(rng.choice(candidates))
  pool_images, pool_hat = _identity_images(
      images, hat, members, eligible, backdoor=backdoor, count=s, rng=rng)
  pool = class_pool_lib.make_class_pool(
      np.stack(pool_images), names=[f"identity{i}" for i in eligible],
      groups=["male" if male[members[i]].mean() >= 0.5 else "female"
              for i in eligible])
  return CelebaData(
      pool=pool, hat=np.stack(pool_hat), backdoor_name=f"identity{backdoor}",
      target_name=f"identity{target}",
      hat_photos=images[members[backdoor][hat[members[backdoor]]]])
