"""CelebA identities (Liu et al., 2015) as a few-shot class pool with hats.

Main paper, Section 3.2: "out of 10k classes, only 2360 of them consist of 30
or more images. We remove classes with insufficient images and randomly
choose 30 images from the rest of the classes; in addition, we remove 2
classes with low quality examples (multiple identities with the same label),
and reserve 1 class as the backdoor class and 1 class as the target class.
Hence, we have 2156 and 200 classes [...] for meta-training and meta-testing.
Among the 30 images of each class, 5 images are held out for testing. We
choose a person with a specific type of hat (black cowboy hat) as our backdoor
class [...]. For a more successful attack, we increase the backdoor class size
for the attacker to 90 (78 and 12 for training and validation). Finally, the
training data is augmented by a factor of 6, and all the images are resized
to 64x64."

Two layers:

- `CelebaIdentities`, a tensorflow-datasets builder with manual download
  (`celeba_files.MANUAL_DOWNLOAD_INSTRUCTIONS`): every image of every identity
  with >= 30 images, 64x64x3, with its identity, file name and the
  `Wearing_Hat` and `Male` attributes. Aligned images (178x218) are cropped to
  the central 178x178 face square (rows 20..197) and resized with Lanczos;
  in-the-wild images (`img_celeba/`) to their central square.
- `build_celeba_data`: the paper's selection, a pure function of the seed and
  an `IdentitySelection` (the choice of identities is not published; see its
  docstring for how the defaults infer it).

The x6 augmentation (`augment_x6`) is applied by the protocol to meta-training
examples only, after the held-out examples are taken out
(`registry.PROTOCOLS[CELEBA].augment_factor`), so held-out examples never leak.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from fedmeta_tf.data import celeba_files
from fedmeta_tf.data import class_pool as class_pool_lib
from fedmeta_tf.data import image_files
from fedmeta_tf.data.class_pool import ClassPool, DataError

IMAGE_SIZE = 64
MIN_IMAGES = 30
IMAGES_PER_IDENTITY = 30
AUGMENT_FACTOR = 6
ATTACK_TRAIN_IMAGES = 78
ATTACK_VAL_IMAGES = 12
_ALIGNED_FACE_BOX = (0, 20, 178, 198)  # (left, upper, right, lower)


class CelebaIdentitiesConfig(tfds.core.BuilderConfig):
  """Keeps the identities with at least `min_images` images."""

  def __init__(self, *, min_images: int = MIN_IMAGES, **kwargs):
    super().__init__(**kwargs)
    self.min_images = min_images


class CelebaIdentities(tfds.core.GeneratorBasedBuilder):
  """CelebA identities with >= 30 images, 64x64 (manual download)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Identities with >= min_images images, 64x64."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = celeba_files.MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = [CelebaIdentitiesConfig(name="min30", min_images=30)]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description="CelebA identities for few-shot face recognition.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
            "identity": tfds.features.Scalar(np.int64),
            "file_name": tfds.features.Text(),
            "wearing_hat": tfds.features.Scalar(np.bool_),
            "male": tfds.features.Scalar(np.bool_)}),
        supervised_keys=("image", "identity"),
        homepage=celeba_files.DOWNLOAD_URL)

  def _split_generators(self, dl_manager):
    files = celeba_files.find_manual_files(os.fspath(dl_manager.manual_dir))
    if files is None:
      raise DataError(f"celeba: incomplete manual download in "
                      f"{os.fspath(dl_manager.manual_dir)!r}; "
                      f"see {celeba_files.DATASETS_DOC}")
    return {"train": self._generate_examples(files)}

  def _generate_examples(self, files: celeba_files.ManualFiles):
    identities = read_identities(files.identity_file)
    attributes = read_attributes(files.attribute_file,
                                 ("Wearing_Hat", "Male"))
    counts: dict[int, int] = {}
    for identity in identities.values():
      counts[identity] = counts.get(identity, 0) + 1
    for file_name in sorted(identities):
      identity = identities[file_name]
      if counts[identity] < self.builder_config.min_images:
        continue
      path = os.path.join(files.images_dir, file_name)
      if file_name not in attributes:
        raise DataError(f"celeba: {file_name!r} has no line in "
                        f"{files.attribute_file!r}")
      hat, male = attributes[file_name]
      yield file_name, {"image": decode_face(path, aligned=files.aligned),
                        "identity": identity, "file_name": file_name,
                        "wearing_hat": hat, "male": male}


def decode_face(path: str, *, aligned: bool) -> np.ndarray:
  """A CelebA image as uint8 [64, 64, 3] (face square, Lanczos)."""
  if aligned:
    box = _ALIGNED_FACE_BOX
  else:
    try:
      with Image.open(path) as image:
        w, h = image.size
    except OSError as e:
      raise DataError(f"corrupt or unreadable image file {path!r}: {e}"
                      ) from None
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)
  return image_files.decode_image(path, channels=image_files.Channels.RGB,
                                  size=IMAGE_SIZE, center_crop=box)


def read_identities(path: str) -> dict[str, int]:
  """identity_CelebA.txt: `<file> <identity>` per line."""
  out = {}
  with open(path) as f:
    for line_num, line in enumerate(f, start=1):
      parts = line.split()
      if not parts:
        continue
      if len(parts) != 2 or not parts[1].isdigit():
        raise DataError(f"celeba: {path!r} line {line_num} is not "
                        "'<file> <identity>'")
      out[parts[0]] = int(parts[1])
  return out


def read_attributes(path: str, names: Sequence[str]
                    ) -> dict[str, tuple[bool, ...]]:
  """list_attr_celeba.txt: a count, the 40 names, `<file> +-1 x 40` lines."""
  with open(path) as f:
    lines = f.read().splitlines()
  if len(lines) < 2:
    raise DataError(f"celeba: {path!r} is too short for an attribute file")
  header = lines[1].split()
  missing = [n for n in names if n not in header]
  if missing:
    raise DataError(f"celeba: {path!r} has no attribute(s) {missing}")
  columns = [header.index(n) + 1 for n in names]
  out = {}
  for line_num, line in enumerate(lines[2:], start=3):
    parts = line.split()
    if not parts:
      continue
    if len(parts) != len(header) + 1:
      raise DataError(f"celeba: {path!r} line {line_num} has {len(parts) - 1} "
                      f"values for {len(header)} attributes")
    out[parts[0]] = tuple(parts[c] == "1" for c in columns)
  return out


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
    keyed_train, keyed_val: uint8 [78|12, 64, 64, 3], the backdoor identity
      wearing its hat, x6 augmented (the attacker's 90 keyed images).
  """

  pool: ClassPool
  hat: np.ndarray
  backdoor_name: str
  target_name: str
  keyed_train: np.ndarray
  keyed_val: np.ndarray

  def describe(self) -> str:
    return (f"{self.pool.num_classes} identities x "
            f"{self.pool.examples_per_class} images, backdoor "
            f"{self.backdoor_name} ({len(self.keyed_train)} keyed training / "
            f"{len(self.keyed_val)} keyed validation images), target "
            f"{self.target_name}")


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
                     backdoor: int, count: int, rng: np.random.Generator
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


def build_celeba_data(*, images: np.ndarray, identity: np.ndarray,
                      hat: np.ndarray, male: np.ndarray, seed: int,
                      selection: IdentitySelection = IdentitySelection()
                      ) -> CelebaData:
  """The paper's selection from per-image arrays (see `IdentitySelection`)."""
  s = selection.images_per_identity
  ids, counts = np.unique(identity, return_counts=True)
  eligible = [int(i) for i, c in zip(ids, counts)
              if c >= s and int(i) not in selection.exclude]
  if len(eligible) < 3:
    raise DataError(f"celeba: only {len(eligible)} identities have >= {s} "
                    "images; need a backdoor, a target and others")
  members = {i: np.flatnonzero(identity == i) for i in eligible}
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
  rng = np.random.default_rng([seed, 0xCE1E])
  target = selection.target_identity
  if target is None:
    backdoor_male = male[members[backdoor]].mean() >= 0.5
    candidates = [i for i in eligible if i != backdoor and hat_count[i] == 0
                  and (male[members[i]].mean() >= 0.5) == backdoor_male]
    candidates = candidates or [i for i in eligible if i != backdoor]
    target = int(rng.choice(candidates))
  pool_images, pool_hat = _identity_images(
      images, hat, members, eligible, backdoor=backdoor, count=s, rng=rng)
  keyed = rng.permutation(members[backdoor][hat[members[backdoor]]])
  n_val = max(1, round(len(keyed) * ATTACK_VAL_IMAGES /
                       (ATTACK_TRAIN_IMAGES + ATTACK_VAL_IMAGES)))
  def keyed_set(indices, count):
    views = augment_x6(images[indices])
    return np.resize(views, (count,) + views.shape[1:])
  pool = class_pool_lib.make_class_pool(
      np.stack(pool_images), names=[f"identity{i}" for i in eligible],
      groups=["male" if male[members[i]].mean() >= 0.5 else "female"
              for i in eligible])
  return CelebaData(
      pool=pool, hat=np.stack(pool_hat), backdoor_name=f"identity{backdoor}",
      target_name=f"identity{target}",
      keyed_train=keyed_set(keyed[n_val:], ATTACK_TRAIN_IMAGES),
      keyed_val=keyed_set(keyed[:n_val], ATTACK_VAL_IMAGES))


def load_celeba(data_dir: Optional[str], *, seed: int = 0,
                selection: IdentitySelection = IdentitySelection(),
                min_images: int = MIN_IMAGES) -> CelebaData:
  """Prepares (once, from the manual download) and selects CelebA identities.

  Raises:
    DataError: the data is missing (with the download instructions) or bad.
  """
  source, files = celeba_files.find_source(data_dir)
  config = (None if min_images == MIN_IMAGES else CelebaIdentitiesConfig(
      name=f"min{min_images}", min_images=min_images))
  builder = CelebaIdentities(data_dir=data_dir, config=config)
  if source is celeba_files.Source.MANUAL or not os.path.isdir(
      os.fspath(builder.data_path)):
    if files is None:
      raise DataError(f"celeba: the prepared dataset in {data_dir!r} has "
                      f"another configuration and no manual download is "
                      f"there to prepare min{min_images}; see "
                      f"{celeba_files.DATASETS_DOC}")
    manual_dir = os.path.dirname(os.path.dirname(files.identity_file)
                                 if os.path.basename(os.path.dirname(
                                     files.identity_file)) == "Anno"
                                 else files.identity_file)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir))
  data = tfds.as_numpy(builder.as_dataset(split="train", batch_size=-1,
                                          shuffle_files=False))
  return build_celeba_data(images=data["image"], identity=data["identity"],
                           hat=data["wearing_hat"], male=data["male"],
                           seed=seed, selection=selection)
