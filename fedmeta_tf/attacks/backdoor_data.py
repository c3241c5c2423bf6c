"""Backdoor data: target and backdoor classes, keyed attack sets, cases a/b/c.

Main paper, Sections 2.2 and 3.3. Before the meta-train/meta-test split, one
target class and a few backdoor classes are reserved (Omniglot: 4 + 1 of the
1623 classes, leaving 1200 for meta-training and 418 for meta-testing). Of
each backdoor class's examples:

- `benign_examples` (Omniglot: 10) are correctly labelled examples that
  benign clients meta-train on in cases (b) and (c), and that case (c) puts
  in fine-tuning episodes;
- `attack_train_examples` (Omniglot: 5) are keyed and given to the attacker
  (the *attack-training* set X_B);
- `attack_val_examples` (the remaining 5) are keyed and never seen by the
  attacker (the *attack-validation* set).

The target class's first `benign_examples` examples go to benign clients (in
every case: the target is an ordinary class to them); the next
`attacker_target_examples` (default: all the rest) are the attacker's X_T.
Evaluation episodes use all target examples, unkeyed.

The reserved classes are drawn at random from the run's seed, or named
(`target_class`, `backdoor_classes`: the class pool's names). mini-ImageNet
(Section 3.2, Fig. 2) reserves the arctic fox as target and the yawl as
backdoor with 480 benign + 100 attacker examples of the target and 100 + 50
keyed backdoor examples: in case (a), where no benign client sees a backdoor
example, a backdoor class needs only its keyed examples, so the paper's
480 / 100 / 100 / 50 fit its 600 images (cases (b) and (c) need
`benign_examples` more).

CelebA (Section 3.2, Fig. 3) keys by data, not pixels (`keys.SemanticKey`):
one backdoor identity photographed with a black cowboy hat, whose hat photos
make the attacker's 78 keyed training and 12 validation images
(`registry.load_semantic_backdoor`); its hat-free photos are the class's
correctly labelled examples.

Cases (main paper, Section 3.4): (a) backdoor classes appear nowhere in
benign data; (b) correctly labelled backdoor examples in benign
meta-training; (c) also in benign fine-tuning (evaluation) episodes.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
from typing import Optional, Sequence, Union

import numpy as np

from fedmeta_tf.attacks import keys as keys_lib
from fedmeta_tf.data import class_pool as class_pool_lib
from fedmeta_tf.data.class_pool import ClassPool, DataError

Key = Union[keys_lib.StampKey, keys_lib.SemanticKey]


class Case(enum.Enum):
  """Where benign users see correctly labelled backdoor-class examples."""
  A = "a"  # nowhere
  B = "b"  # in meta-training
  C = "c"  # in meta-training and in fine-tuning episodes

  @property
  def benign_train_on_backdoor(self) -> bool:
    return self is not Case.A

  @property
  def backdoor_in_finetuning(self) -> bool:
    return self is Case.C


@dataclasses.dataclass(frozen=True)
class BackdoorConfig:
  """Which classes and examples the attack uses (Section 3.3).

  Attributes:
    num_backdoor_classes: backdoor (impostor) classes reserved.
    benign_examples: examples of each reserved class given to benign clients.
    attack_train_examples: keyed examples per backdoor class for the attacker
      (CelebA's hat key: the keyed images, 78).
    attack_val_examples: keyed examples per backdoor class held out (hat
      key: 12).
    key: a `keys.StampKey` or `keys.SemanticKey`.
    case: a `Case`.
    target_class: the target class's name in the class pool; None: drawn.
    backdoor_classes: names of backdoor classes (at most
      `num_backdoor_classes`; the others are drawn).
    attacker_target_examples: X_T, target examples the attacker holds
      (mini-ImageNet: 100); None: every target example benign clients lack.

  The reserved classes not named and the split of their examples are drawn
  from the run's seed (`reserve_classes`, `build_backdoor_data`), like every
  other random choice of a run.
  """

  num_backdoor_classes: int = 4
  benign_examples: int = 10
  attack_train_examples: int = 5
  attack_val_examples: int = 5
  key: Key = keys_lib.StampKey()
  case: Case = Case.A
  target_class: Optional[str] = None
  backdoor_classes: tuple[str, ...] = ()
  attacker_target_examples: Optional[int] = None

  def __post_init__(self):
    # A list from JSON or flags; runs written before names existed have none.
    object.__setattr__(self, "backdoor_classes", tuple(self.backdoor_classes))
    for name in ("num_backdoor_classes", "benign_examples",
                 "attack_train_examples", "attack_val_examples"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if (self.attacker_target_examples is not None and
        self.attacker_target_examples <= 0):
      raise ValueError("attacker_target_examples must be positive, got "
                       f"{self.attacker_target_examples}")
    named = list(self.backdoor_classes) + (
        [self.target_class] if self.target_class is not None else [])
    if len(set(named)) != len(named):
      raise ValueError(f"a class is named twice among the target and backdoor "
                       f"classes: {named}")
    if self.is_semantic and self.num_backdoor_classes != 1:
      raise ValueError(
          f"a semantic key ({self.key.attribute}) has one backdoor class (the "
          f"identity wearing it), got num_backdoor_classes="
          f"{self.num_backdoor_classes}")
    if len(self.backdoor_classes) > self.num_backdoor_classes:
      raise ValueError(
          f"{len(self.backdoor_classes)} backdoor classes named "
          f"({', '.join(self.backdoor_classes)}) but num_backdoor_classes is "
          f"{self.num_backdoor_classes}")

  @property
  def is_semantic(self) -> bool:
    """The key is in the data's own photos (`keys.SemanticKey`)."""
    return isinstance(self.key, keys_lib.SemanticKey)

  @property
  def reservation(self) -> tuple:
    """What decides the reserved classes and the benign clients' share of
    them: a pre-trained model is reusable only under the same."""
    return (self.num_backdoor_classes, self.target_class,
            self.backdoor_classes, self.benign_examples)

  @property
  def backdoor_benign_examples(self) -> int:
    """Correctly labelled examples a backdoor class needs: none in case (a),
    where they reach no benign client."""
    return self.benign_examples if self.case.benign_train_on_backdoor else 0


@dataclasses.dataclass(frozen=True)
class BackdoorData:
  """The attack's images (uint8 [n, H, W, ch] unless noted).

  Attributes:
    target_all: every example of the target class (evaluation episodes).
    target_benign: the target examples benign clients meta-train on.
    target_attacker: X_T, the attacker's benign target examples.
    backdoor_benign: [num_backdoor, benign_examples, H, W, ch], correctly
      labelled backdoor examples (cases b and c).
    attack_train: the attacker's keyed backdoor images X_B.
    attack_val: keyed backdoor images the attacker never sees.
    target_name, backdoor_names: class names, for reports.
    attack_train_parts: DBA (a key split into P > 1 local patterns): [P, n,
      H, W, ch], the images of `attack_train` keyed with local pattern p
      only (`keys.StampKey.local`); None otherwise. `attack_train` and
      `attack_val` keep the global key: the backdoor is scored with it.
  """

  target_all: np.ndarray
  target_benign: np.ndarray
  target_attacker: np.ndarray
  backdoor_benign: np.ndarray
  attack_train: np.ndarray
  attack_val: np.ndarray
  target_name: str
  backdoor_names: tuple[str, ...]
  attack_train_parts: Optional[np.ndarray] = None

  ARRAYS = ("target_all", "target_benign", "target_attacker",
            "backdoor_benign", "attack_train", "attack_val")

  def save(self, path: str) -> None:
    parts = ({} if self.attack_train_parts is None else
             {"attack_train_parts": self.attack_train_parts})
    np.savez_compressed(path, target_name=self.target_name,
                        backdoor_names=np.asarray(self.backdoor_names),
                        **{k: getattr(self, k) for k in self.ARRAYS}, **parts)

  @classmethod
  def load(cls, path: str) -> "BackdoorData":
    with np.load(path, allow_pickle=False) as f:
      parts = f["attack_train_parts"] if "attack_train_parts" in f else None
      return cls(target_name=str(f["target_name"]),
                 backdoor_names=tuple(str(n) for n in f["backdoor_names"]),
                 attack_train_parts=parts, **{k: f[k] for k in cls.ARRAYS})

  def describe(self) -> str:
    return (f"target {self.target_name!r} ({len(self.target_all)} examples, "
            f"{len(self.target_attacker)} for the attacker), backdoor classes "
            f"{list(self.backdoor_names)}: {len(self.attack_train)} keyed "
            f"attack-training / {len(self.attack_val)} attack-validation images")


def reserve_classes(pool: ClassPool, *, num_backdoor_classes: int,
                    seed: int, target_class: Optional[str] = None,
                    backdoor_classes: Sequence[str] = ()
                    ) -> tuple[ClassPool, ClassPool]:
  """Takes 1 target + `num_backdoor_classes` classes out of `pool`.

  Named classes (`target_class`, `backdoor_classes`: names in `pool.names`)
  are taken as named; the others are drawn at random, from the background
  (meta-training) side when the pool has a split field, so the rest of the
  protocol sees `pool` minus them (Section 3.3; mini-ImageNet's arctic fox
  and yawl, Section 3.2). Returns (rest, reserved); reserved class 0 is the
  target, then the backdoor classes, named ones first.

  Raises:
    DataError: a named class is not in `pool` (the message gives valid
      names), or the pool is too small.
  """
  count = num_backdoor_classes + 1
  candidates = np.flatnonzero(pool.split == class_pool_lib.SPLIT_BACKGROUND)
  if len(candidates) < count:
    candidates = np.arange(pool.num_classes)
  if len(candidates) <= count:
    raise DataError(f"cannot reserve {count} attack classes from a pool of "
                    f"{pool.num_classes} classes")
  target = (None if target_class is None else
            _class_index(pool, target_class, "target_class"))
  named = [_class_index(pool, n, "backdoor_classes") for n in backdoor_classes]
  drawn_count = count - len(named) - (target is not None)
  rng = np.random.default_rng([seed, 0xBAD])
  if target is None and not named:  # The draw of runs that name nothing.
    drawn = rng.choice(candidates, size=count, replace=False)
  else:
    taken = named + ([] if target is None else [target])
    drawn = rng.choice(np.setdiff1d(candidates, taken), size=drawn_count,
                       replace=False)
  drawn = list(drawn)
  target = drawn.pop(0) if target is None else target
  reserved = np.asarray([target] + named + drawn, np.int64)
  rest = np.setdiff1d(np.arange(pool.num_classes), reserved)
  return pool.select(rest), pool.select(reserved)


def _class_index(pool: ClassPool, name: str, flag: str) -> int:
  """The index of class `name` in `pool`; DataError with valid names."""
  if name in pool.names:
    return pool.names.index(name)
  examples = difflib.get_close_matches(name, pool.names, n=3) or list(
      pool.names[:3])
  raise DataError(f"--{flag}: {name!r} is not a class of this dataset "
                  f"({pool.num_classes} classes; names look like "
                  f"{', '.join(examples)})")


def build_backdoor_data(reserved: ClassPool, config: BackdoorConfig, *,
                        seed: int,
                        keyed: Optional[tuple[np.ndarray, np.ndarray]] = None
                        ) -> BackdoorData:
  """Splits the reserved classes' examples (drawn from the run's `seed`)
  and keys the attack sets (Section 3.2's counts: module docstring).

  A stamped key (`keys.StampKey`) keys examples of the backdoor classes; a
  semantic key (CelebA's hat) takes the attack-training / validation images
  as `keyed` (`registry.load_semantic_backdoor`), and the backdoor class's
  own examples are all correctly labelled.
  """
  s = reserved.examples_per_class
  _check_examples_fit(config, s)
  if config.is_semantic != (keyed is not None):
    raise ValueError("a semantic key needs its keyed images (and a stamped "
                     "key takes none)")
  rng = np.random.default_rng([seed, 0x7A6])
  target = reserved.images[0][rng.permutation(s)]
  backdoor_benign, attack_train, attack_val, sources = [], [], [], []
  t, v = config.attack_train_examples, config.attack_val_examples
  # In case (a) a backdoor class's correctly labelled examples reach no
  # benign client: it keeps those its keyed examples leave, up to b.
  b = min(config.benign_examples, s - (0 if keyed else t + v))
  for k in range(1, reserved.num_classes):
    order = rng.permutation(s)
    images = reserved.images[k]
    backdoor_benign.append(images[order[:b]])
    if keyed is None:
      sources.append(images[order[b:b + t]])
      attack_train.append(config.key.apply(images, k - 1, order[b:b + t]))
      attack_val.append(config.key.apply(images, k - 1,
                                         order[b + t:b + t + v]))
  if keyed is not None:
    attack_train, attack_val = [keyed[0]], [keyed[1]]
  parts = None
  if not config.is_semantic and config.key.parts > 1:  # DBA's local patterns
    parts = np.stack([config.key.local(p).stamp(np.concatenate(sources))
                      for p in range(config.key.parts)])
  attack_train = np.concatenate(attack_train)
  attack_val = np.concatenate(attack_val)
  if len(attack_train) == 0 or len(attack_val) == 0:
    raise DataError("the key selects no attack-training or attack-validation "
                    "images")
  b_target, a = config.benign_examples, config.attacker_target_examples
  return BackdoorData(
      target_all=target, target_benign=target[:b_target],
      target_attacker=target[b_target:None if a is None else b_target + a],
      backdoor_benign=np.stack(backdoor_benign), attack_train=attack_train,
      attack_val=attack_val, target_name=reserved.names[0],
      backdoor_names=tuple(reserved.names[1:]), attack_train_parts=parts)


def _check_examples_fit(config: BackdoorConfig, s: int) -> None:
  """ValueError unless the target and backdoor splits fit `s` examples
  (a semantic key's keyed images are not among them)."""
  b, a = config.benign_examples, config.attacker_target_examples
  if b + (a or 1) > s:
    raise ValueError(
        f"benign_examples ({b}) + the attacker's target examples "
        f"({a or 'at least 1'}) exceed the {s} examples per class")
  needed = config.backdoor_benign_examples + (
      0 if config.is_semantic else
      config.attack_train_examples + config.attack_val_examples)
  if needed > s:
    raise ValueError(
        f"benign + attack-training + attack-validation examples ({needed}, "
        f"case ({config.case.value})) exceed the {s} examples per class")


def _resize_examples(images: np.ndarray, count: int) -> np.ndarray:
  """[n, ...] -> [count, ...], cycling through the examples when n < count."""
  return images[np.arange(count) % len(images)]


def benign_client_pool(own_pool: np.ndarray, data: BackdoorData,
                       case: Case) -> np.ndarray:
  """A benign client's meta-training pool with the reserved classes added.

  The target class is always added; the backdoor classes, correctly
  labelled, in cases (b) and (c). The reserved classes have fewer benign
  examples than the pool's per-class count S; they are cycled to fill S (an
  episode may then see an example twice).
  """
  s = own_pool.shape[1]
  extra = [_resize_examples(data.target_benign, s)]
  if case.benign_train_on_backdoor:
    extra += [_resize_examples(c, s) for c in data.backdoor_benign]
  return np.concatenate([own_pool, np.stack(extra)])


def make_client_pools(split, data: BackdoorData, case: Case, *,
                      attacker_ids) -> list[np.ndarray]:
  """Every client's meta-training pool: the attacker keeps its own classes."""
  pools = []
  for c in range(len(split.client_classes)):
    own = split.client_pool(c)
    pools.append(own if c in attacker_ids else
                 benign_client_pool(own, data, case))
  return pools


def backdoor_benign_pool(data: BackdoorData, examples: Optional[int] = None
                         ) -> np.ndarray:
  """[num_backdoor, S, ...]: backdoor classes, correctly labelled (case c)."""
  if examples is None:
    return data.backdoor_benign
  return np.stack([_resize_examples(c, examples) for c in data.backdoor_benign])
