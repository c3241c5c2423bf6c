"""Datasets by name, with the papers' protocols (main paper, Sections 3.2-3.3).

`load_dataset(name, data_dir)` returns the class pool; `PROTOCOLS[name]` says
how the papers split it, and `protocol_for(name, **sizes)` that protocol with
the sizes the binaries' flags set (`protocol.split_by_protocol` applies it). The embedded `glyphs` dataset needs no data_dir.
Loaders of real datasets raise `DataError` with a one-line message naming
what was looked for, where, and how to get it.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from typing import Any, Optional

from fedmeta_tf import enums
from fedmeta_tf.data import class_pool as class_pool_lib
from fedmeta_tf.data.class_pool import ClassPool, DataError


class DatasetName(enum.Enum):
  GLYPHS = "glyphs"
  OMNIGLOT = "omniglot"
  MINIIMAGENET = "miniimagenet"
  CELEBA = "celeba"
  ARCHIVE = "archive"


@dataclasses.dataclass(frozen=True)
class Protocol:
  """How a dataset is split (main paper, Sections 3.2 and 3.3).

  The sizes are flags of the binaries (`--num_meta_train`, `--num_meta_test`,
  `--examples_per_class`, `--heldout_per_class`; `with_sizes`); unset, they
  are the paper's (`PROTOCOLS`).

  Attributes:
    num_meta_train: meta-training classes: drawn at random (`own_split`
      False), or drawn from the dataset's own meta-training classes; None:
      all of those (`own_split` True only).
    heldout_per_class: examples of each meta-training class held out.
    rotate: x4 rotation augmentation (Omniglot protocol).
    augment_factor: training examples of meta-training classes are augmented
      this many times, after the held-out examples are taken out (CelebA: 6,
      `celeba.augment_x6`; see `augment_split`).
    num_meta_test: meta-testing classes, drawn from the classes left (or from
      the dataset's own meta-testing classes); None: all of them.
    examples_per_class: examples of each class used, drawn at random (CelebA:
      images per identity, chosen by the loader); None: all.
    own_split: meta-train / meta-test classes come from the dataset's own
      split (`ClassPool.split`: background / evaluation); default: True when
      `num_meta_train` is None.
  """

  num_meta_train: Optional[int]
  heldout_per_class: int
  rotate: bool
  augment_factor: int = 1
  num_meta_test: Optional[int] = None
  examples_per_class: Optional[int] = None
  own_split: Optional[bool] = None

  def __post_init__(self):
    if self.own_split is None:
      object.__setattr__(self, "own_split", self.num_meta_train is None)
    if not self.own_split and self.num_meta_train is None:
      raise ValueError("a protocol without the dataset's own split needs a "
                       "number of meta-training classes")
    for name in ("num_meta_train", "num_meta_test", "examples_per_class"):
      value = getattr(self, name)
      if value is not None and value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if self.heldout_per_class < 0:
      raise ValueError(f"heldout_per_class must be >= 0, got "
                       f"{self.heldout_per_class}")

  def with_sizes(self, **sizes: Optional[int]) -> "Protocol":
    """This protocol with the sizes given (not None) replaced."""
    return dataclasses.replace(
        self, **{k: v for k, v in sizes.items() if v is not None})

  @classmethod
  def from_json(cls, d: Optional[dict], dataset: str) -> "Protocol":
    """From a saved config; None (saved before the sizes were flags): the
    dataset's paper protocol."""
    if d is None:
      return PROTOCOLS[parse_dataset_name(dataset)]
    return cls(**d)


# The papers' protocols. Omniglot: 1200 random classes of 1623, 20 examples
# each (all); mini-ImageNet: the Ravi split, 64 / 20 classes of 600 images
# (all); CelebA: 2156 / 200 identities of 30 images (Section 3.2).
PROTOCOLS = {
    DatasetName.GLYPHS: Protocol(num_meta_train=None, heldout_per_class=5,
                                 rotate=True),
    DatasetName.OMNIGLOT: Protocol(num_meta_train=1200, heldout_per_class=5,
                                   rotate=True),
    # The Ravi & Larochelle split the paper follows ([55]): the loader marks
    # its 64 train classes 0, 20 test classes 1 and 16 validation classes -1.
    DatasetName.MINIIMAGENET: Protocol(num_meta_train=None, heldout_per_class=20,
                                       rotate=False),
    DatasetName.CELEBA: Protocol(num_meta_train=2156, heldout_per_class=5,
                                 rotate=False, augment_factor=6,
                                 num_meta_test=200, examples_per_class=30),
    DatasetName.ARCHIVE: Protocol(num_meta_train=None, heldout_per_class=5,
                                  rotate=False),
}


def protocol_for(name: DatasetName | str, **sizes: Optional[int]) -> Protocol:
  """The paper's protocol of `name` with the sizes given (flags) replaced."""
  name = parse_dataset_name(name) if isinstance(name, str) else name
  return PROTOCOLS[name].with_sizes(**sizes)


def default_attack_classes(name: DatasetName | str
                           ) -> tuple[Optional[str], tuple[str, ...]]:
  """(target, backdoor classes) the attack reserves by default, by name.

  mini-ImageNet: the paper's arctic fox and yawl (main paper, Section 3.2,
  Fig. 2); other datasets: (None, ()), every reserved class drawn from the
  run's seed.
  """
  name = parse_dataset_name(name) if isinstance(name, str) else name
  if name is DatasetName.MINIIMAGENET:
    from fedmeta_tf.data import mini_imagenet  # pylint: disable=g-import-not-at-top
    return mini_imagenet.TARGET_WNID, (mini_imagenet.BACKDOOR_WNID,)
  return None, ()


@dataclasses.dataclass(frozen=True)
class SemanticBackdoor:
  """A backdoor class whose key is in its own photos: CelebA's black cowboy
  hat (main paper, Section 3.2, Fig. 3); nothing is stamped.

  Attributes:
    backdoor_class, target_class: class names in the pool.
    keyed_train, keyed_val: uint8 [n, H, W, ch], the attacker's keyed images
      (attack training) and the held-out ones (attack validation).
    description: one line saying how many distinct keyed photos they hold.
  """

  backdoor_class: str
  target_class: str
  keyed_train: Any
  keyed_val: Any
  description: str


# Attributes a semantic key can name, by dataset (the prepared CelebA dataset
# keeps Wearing_Hat).
SEMANTIC_ATTRIBUTES = {DatasetName.CELEBA: ("Wearing_Hat",)}


def load_semantic_backdoor(
    name: DatasetName | str, data_dir: Optional[str], *, attribute: str,
    seed: int, train_images: int, val_images: int,
    protocol: Optional[Protocol] = None, reserved: int = 0,
    backdoor_class: Optional[str] = None, target_class: Optional[str] = None
) -> tuple[ClassPool, SemanticBackdoor]:
  """The class pool and its semantic backdoor (the hat key).

  CelebA (Section 3.2): the backdoor identity is the one with the most
  `Wearing_Hat` photos unless `backdoor_class` names one, the target a
  hat-free identity of the same sex drawn from `seed` unless `target_class`
  names one (`celeba.IdentitySelection`); the keyed images are that
  identity's hat photos, split between attack training and validation and
  augmented to `train_images` / `val_images` (`celeba.keyed_sets`).

  Raises:
    ValueError: the dataset has no such attribute, or a class name is not
      an identity name.
    DataError: no attribute file, too few identities or hat photos.
  """
  name = parse_dataset_name(name) if isinstance(name, str) else name
  if attribute not in SEMANTIC_ATTRIBUTES.get(name, ()):
    valid = "; ".join(f"--dataset={d.value}: {', '.join(a)}"
                      for d, a in SEMANTIC_ATTRIBUTES.items())
    raise ValueError(f"--key=hat: dataset {name.value!r} has no "
                     f"{attribute!r} attribute to key on (semantic keys: "
                     f"{valid}); use --key=stamp")
  from fedmeta_tf.data import celeba  # pylint: disable=g-import-not-at-top
  data = _load_celeba(
      data_dir, seed=seed, protocol=protocol, reserved=reserved,
      backdoor_identity=_identity_number(backdoor_class, "backdoor_classes"),
      target_identity=_identity_number(target_class, "target_class"))
  if data.backdoor_name is None:
    raise DataError("celeba: the hat key needs the attribute file "
                    "(list_attr_celeba.txt or list_attr_celeba.csv) beside "
                    "identity_CelebA.txt; benign training needs none; see "
                    "docs/datasets.md")
  sets = celeba.keyed_sets(data.hat_photos, train=train_images,
                           val=val_images, seed=seed)
  return data.pool, SemanticBackdoor(
      backdoor_class=data.backdoor_name, target_class=data.target_name,
      keyed_train=sets.train, keyed_val=sets.val,
      description=sets.describe(data.backdoor_name))


def _identity_number(class_name: Optional[str], flag: str) -> Optional[int]:
  """identity<N> -> N (CelebA's class names); None -> None."""
  if class_name is None:
    return None
  digits = class_name.removeprefix("identity")
  if not digits.isdigit():
    raise ValueError(f"--{flag}: CelebA classes are named identity<N> (N as "
                     f"in identity_CelebA.txt), got {class_name!r}")
  return int(digits)


def _load_celeba(data_dir: Optional[str], *, seed: int,
                 protocol: Optional[Protocol], reserved: int,
                 backdoor_identity: Optional[int] = None,
                 target_identity: Optional[int] = None):
  """`celeba.load_celeba` under `protocol`'s sizes (`load_dataset`)."""
  from fedmeta_tf.data import celeba  # pylint: disable=g-import-not-at-top
  proto = protocol or PROTOCOLS[DatasetName.CELEBA]
  images = proto.examples_per_class or celeba.IMAGES_PER_IDENTITY
  selection = celeba.IdentitySelection(
      images_per_identity=images, backdoor_identity=backdoor_identity,
      target_identity=target_identity)
  # The prepared dataset keeps the identities with enough images (the
  # paper's 30: min30; --examples_per_class below 30 prepares another).
  return celeba.load_celeba(
      data_dir, seed=seed, selection=selection,
      min_images=min(images, celeba.MIN_IMAGES),
      meta_classes=(proto.num_meta_train, proto.num_meta_test, reserved))


class KeyKind(enum.Enum):
  """How backdoor images carry the key (main paper, Section 2.2)."""
  STAMP = "stamp"  # a pattern stamped on the images (Omniglot, mini-ImageNet)
  HAT = "hat"  # CelebA: an identity's own photos wearing a hat


def default_key(name: DatasetName | str) -> KeyKind:
  """The paper's key: the hat on CelebA (Section 3.2), a stamp elsewhere."""
  name = parse_dataset_name(name) if isinstance(name, str) else name
  return KeyKind.HAT if name is DatasetName.CELEBA else KeyKind.STAMP


def parse_dataset_name(name: str) -> DatasetName:
  return enums.parse_enum(DatasetName, name, "dataset")


def check_data_available(name: DatasetName | str,
                         data_dir: Optional[str]) -> None:
  """Raises DataError now, cheaply (no TensorFlow), when the data is missing.

  Binaries call it first, so a run without data fails in about a second with
  the download instructions instead of after starting TensorFlow/TFF.
  """
  name = parse_dataset_name(name) if isinstance(name, str) else name
  if name is DatasetName.OMNIGLOT:
    from fedmeta_tf.data import omniglot  # pylint: disable=g-import-not-at-top
    omniglot.find_source(data_dir)
  elif name is DatasetName.MINIIMAGENET:
    from fedmeta_tf.data import mini_imagenet  # pylint: disable=g-import-not-at-top
    mini_imagenet.find_layout(data_dir)
  elif name is DatasetName.CELEBA:
    from fedmeta_tf.data import celeba_files  # pylint: disable=g-import-not-at-top
    celeba_files.find_source(data_dir)


def augment_split(name: DatasetName | str, split,
                  protocol: Optional[Protocol] = None):
  """Applies `protocol.augment_factor` to a MetaSplit's training pool.

  Only `meta_train` (the clients' training examples) is augmented; held-out
  and meta-test examples stay as they are. `protocol` None: `PROTOCOLS[name]`.
  """
  name = parse_dataset_name(name) if isinstance(name, str) else name
  factor = (protocol or PROTOCOLS[name]).augment_factor
  if factor == 1:
    return split
  from fedmeta_tf.data import celeba  # pylint: disable=g-import-not-at-top
  if factor != celeba.AUGMENT_FACTOR:
    raise ValueError(f"augment_factor must be 1 or {celeba.AUGMENT_FACTOR}, "
                     f"got {factor}")
  train = split.meta_train
  return dataclasses.replace(split, meta_train=dataclasses.replace(
      train, images=celeba.augment_x6(train.images)))


def load_dataset(name: DatasetName | str, data_dir: Optional[str] = None, *,
                 seed: int = 0, protocol: Optional[Protocol] = None,
                 reserved: int = 0) -> ClassPool:
  """The class pool of dataset `name`.

  Args:
    name: the dataset.
    data_dir: where it is.
    seed: the run's seed.
    protocol: the split it is for (None: `PROTOCOLS[name]`); CelebA's loader
      selects `examples_per_class` images per identity and refuses too few
      identities before preparing anything (`celeba_files.too_few_identities`).
    reserved: classes the attack takes out of the pool first (CelebA's check).
  """
  name = parse_dataset_name(name) if isinstance(name, str) else name
  if name is DatasetName.GLYPHS:
    from fedmeta_tf.data import glyphs  # pylint: disable=g-import-not-at-top
    return glyphs.load_glyphs(data_dir or None)
  if name is DatasetName.OMNIGLOT:
    from fedmeta_tf.data import omniglot  # pylint: disable=g-import-not-at-top
    return omniglot.load_omniglot(data_dir)
  if name is DatasetName.MINIIMAGENET:
    from fedmeta_tf.data import mini_imagenet  # pylint: disable=g-import-not-at-top
    return mini_imagenet.load_mini_imagenet(data_dir)
  if name is DatasetName.CELEBA:
    return _load_celeba(data_dir, seed=seed, protocol=protocol,
                        reserved=reserved).pool
  if name is DatasetName.ARCHIVE:
    if not data_dir or not os.path.isfile(data_dir):
      raise DataError(f"dataset 'archive' needs --data_dir to be the path of a "
                      f"class-pool archive (.npz), got {data_dir!r}")
    return class_pool_lib.load_class_pool_archive(data_dir)
  raise DataError(
      f"dataset {name.value!r}: no loader yet (issue: real datasets); the "
      "embedded 'glyphs' and 'omniglot' (class-pool archive) work today")
