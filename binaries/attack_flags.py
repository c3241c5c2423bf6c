"""Flags of Experiment 1 (the one-shot backdoor attack) for train_fedmeta.

Defined here so that train_fedmeta stays readable; `--attack=none` (the
default) leaves train_fedmeta's benign path untouched.
"""

from __future__ import annotations

from typing import Optional

from absl import flags

from binaries import common
from fedmeta_tf.attacks import backdoor_data
from fedmeta_tf.attacks import backdoor_reptile
from fedmeta_tf.attacks import dba
from fedmeta_tf.attacks import keys
from fedmeta_tf.attacks import neurotoxin
from fedmeta_tf.data import celeba_selection
from fedmeta_tf.data import registry
from fedmeta_tf.experiments import attack_schedule
from fedmeta_tf.experiments import backdoor_attack

_ATTACK = flags.DEFINE_enum(
    "attack", "none", [k.value for k in attack_schedule.AttackKind],
    "none: benign training only; boosted: one-shot boosted backdoor (main "
    "paper §2.2); model_replacement: amplified update (pruning paper §III.D).")
_ATTACK_ROUNDS = flags.DEFINE_list(
    "attack_rounds", ["1"], "Rounds (after the pre-trained round 0) in which "
    "the attacker is selected; several give repeated attacks.")
_ATTACKER_IDS = flags.DEFINE_list("attacker_ids", ["0"],
                                  "Malicious clients (the papers' user 1).")
_PRETRAIN_ROUNDS = flags.DEFINE_integer(
    "pretrain_rounds", 10, "Benign rounds before the pre-trained round 0.")
_PRETRAINED_FROM = flags.DEFINE_string(
    "pretrained_from", None, "Run directory whose checkpoints/pretrained.npz "
    "replaces pre-training (same dataset, seed and federation).")
_ATTACKER_UPDATE_FROM = flags.DEFINE_string(
    "attacker_update_from", None, "Attack run directory whose kept attacker "
    "update is sent instead of training the attacker (and whose pre-trained "
    "model is used): the same attack against another aggregator "
    "(--runtime=inprocess; docs/server_defenses.md).")
_SCORE_EVERY = flags.DEFINE_integer(
    "score_every", 1, "Experiment rounds scored: round 0, the attack rounds, "
    "every this-many-th round and the last one (1: every round; the others' "
    "metrics are left blank in metrics.csv).")
_BOOSTING_FACTOR = flags.DEFINE_float(
    "boosting_factor", None, "The factor the attacker multiplies its update "
    "by: lambda for --attack=boosted (default 3, main paper §3.3), gamma for "
    "--attack=model_replacement (default M_min, pruning paper §III-D).")
_ATTACKER_ITERATIONS = flags.DEFINE_integer(
    "attacker_iterations", 50000, "The attacker's E (Omniglot: 50000).")
_ATTACKER_INNER_EPOCHS = flags.DEFINE_integer(
    "attacker_inner_epochs", 50,
    "The attacker's e, inner epochs over each poisoned episode's N*K examples "
    "(the paper: Omniglot 50, mini-ImageNet 1, CelebA 12).")
_ATTACKER_INNER_STEPS = flags.DEFINE_integer(
    "attacker_inner_steps", None,
    "Instead of --attacker_inner_epochs: the attacker's e as Adam steps per "
    "episode (the CPU flagfiles).")
_BACKDOOR_RATIO = flags.DEFINE_string(
    "backdoor_ratio", "2:3", "backdoor:target examples in the target slot.")
_TARGET_SLOT = flags.DEFINE_enum(
    "target_slot", "last", [s.value for s in backdoor_reptile.TargetSlot],
    "Output of the target class in poisoned episodes: last (the paper: "
    "'always ... the N-th model output') or random (a random output per "
    "episode).")
_KEYED_LAST_STEPS = flags.DEFINE_integer(
    "attacker_keyed_last_steps", 0,
    "0 (the papers): the attacker's inner mini-batches shuffle the whole "
    "poisoned support set; k > 0: the last k of its e inner steps hold the "
    "keyed examples, the others the clean ones (docs/attack.md).")
_ATTACKER_INNER_LR = flags.DEFINE_float(
    "attacker_inner_lr", None,
    "The attacker's Adam learning rate (default: the benign --inner_lr).")
_NEUROTOXIN_RATIO = flags.DEFINE_float(
    "attacker_neurotoxin_ratio", 0.0,
    "Neurotoxin (Zhang et al., ICML 2022): the share of coordinates, largest "
    "in the attacker's own benign update, on which its sent update is zeroed "
    f"(the paper's vision runs: {neurotoxin.PAPER_RATIO}); 0: off.")
_DBA_PARTS = flags.DEFINE_integer(
    "dba_parts", 0,
    "DBA (Xie et al., ICLR 2020): split the stamp key into this many local "
    "patterns (row bands); the i-th of --attacker_ids stamps pattern i mod "
    "P, the backdoor is scored with the whole key; 0 or 1: off. Needs at "
    "least that many attackers.")
_CASE = flags.DEFINE_enum("case", "a", [c.value for c in backdoor_data.Case],
                          "a: backdoor classes nowhere in benign data; b: in "
                          "benign meta-training; c: also in fine-tuning.")
_NUM_BACKDOOR_CLASSES = flags.DEFINE_integer(
    "num_backdoor_classes", 4,
    "Backdoor classes reserved (Omniglot's 4); when not given, as many as "
    "--backdoor_classes names (mini-ImageNet: 1, the yawl). Classes not "
    "named are drawn from --seed.")
_TARGET_CLASS = flags.DEFINE_string(
    "target_class", None,
    "The target class by name (mini-ImageNet: a wnid; Omniglot: "
    "Alphabet/characterNN; glyphs and archives: the pool's class names). "
    "Default: mini-ImageNet the arctic fox n02120079 (the paper's), other "
    "datasets drawn from --seed.")
_BACKDOOR_CLASSES = flags.DEFINE_list(
    "backdoor_classes", None,
    "Backdoor classes by name, comma-separated (names as --target_class). "
    "Default: mini-ImageNet the yawl n04612504 (the paper's), other datasets "
    "drawn from --seed.")
_BENIGN_EXAMPLES = flags.DEFINE_integer(
    "backdoor_benign_examples", 10,
    "Examples of each reserved class given to benign clients (target: every "
    "case; backdoor classes: cases b and c).")
_ATTACKER_TARGET_EXAMPLES = flags.DEFINE_integer(
    "attacker_target_examples", None,
    "X_T: unkeyed target examples the attacker holds (the paper: "
    "mini-ImageNet 100); default: every target example benign clients lack.")
_ATTACK_TRAIN_EXAMPLES = flags.DEFINE_integer(
    "attack_train_examples", 5, "Keyed examples per backdoor class (attacker); "
    "with --key=hat, when not given, the paper's 78 keyed images.")
_ATTACK_VAL_EXAMPLES = flags.DEFINE_integer(
    "attack_val_examples", 5, "Keyed held-out examples per backdoor class; "
    "with --key=hat, when not given, the paper's 12.")
_KEY = flags.DEFINE_enum(
    "key", None, [k.value for k in registry.KeyKind],
    "stamp: a pattern stamped on backdoor images (--key_shape etc.; Omniglot, "
    "mini-ImageNet); hat: CelebA's semantic key, an identity's own photos "
    "with a hat (main paper Section 3.2; one backdoor identity, the one with "
    "the most Wearing_Hat photos unless --backdoor_classes=identity<N>). "
    "Default: hat on celeba, stamp elsewhere.")
_KEY_SHAPE = flags.DEFINE_enum("key_shape", "square",
                               [s.value for s in keys.KeyShape],
                               "Stamped backdoor key pattern.")
_KEY_SIZE = flags.DEFINE_integer("key_size", 4, "Key side in pixels.")
_KEY_POSITION = flags.DEFINE_enum("key_position", "bottom_right",
                                  [p.value for p in keys.KeyPosition],
                                  "Where the key is stamped.")
_KEY_MARGIN = flags.DEFINE_integer("key_margin", 1,
                                   "Key distance from the border (pixels).")
_KEY_VALUE = flags.DEFINE_integer("key_value", 255, "Key pixel value (uint8).")
_BACKDOOR_EVAL_EPISODES = flags.DEFINE_integer(
    "backdoor_eval_episodes", 40, "Episodes the backdoor metrics average.")


def check_attack_flags(dataset: str) -> None:
  """Refuses (ValueError, one line) settings that would have no effect:
  --attacker_inner_epochs beside --attacker_inner_steps (steps win), the
  stamp's --key_* flags with the hat key (--key=hat, CelebA's default), and
  --key_margin with a centred key (no border distance); --dba_parts with
  the hat key (nothing to split) or with fewer attackers than parts."""
  if _ATTACKER_INNER_STEPS.value is not None:
    common.refuse_if_set(
        "attacker_inner_epochs",
        f"--attacker_inner_steps={_ATTACKER_INNER_STEPS.value}",
        "the two are alternatives (epochs: the paper's e; steps: CPU runs); "
        "give one")
  if key_kind_from_flags(dataset) is registry.KeyKind.HAT:
    for name in (_KEY_SHAPE, _KEY_SIZE, _KEY_POSITION, _KEY_MARGIN,
                 _KEY_VALUE):
      common.refuse_if_set(name.name, "--key=hat",
                           "the hat key stamps nothing; leave the --key_* "
                           "flags unset, or use --key=stamp")
  _check_dba(dataset)
  if _KEY_POSITION.value == keys.KeyPosition.CENTER.value:
    common.refuse_if_set(
        "key_margin", f"--key_position={_KEY_POSITION.value}",
        "a centred key is placed by the image size alone; leave it unset, or "
        "use a corner --key_position (bottom_right, bottom_left, top_right, "
        "top_left)")


def _check_dba(dataset: str) -> None:
  """--dba_parts needs a stamp to split and an attacker per local pattern."""
  if _DBA_PARTS.value < 0:
    raise ValueError(f"--dba_parts must be >= 0, got {_DBA_PARTS.value}")
  if key_kind_from_flags(dataset) is registry.KeyKind.HAT:
    common.refuse_if_set("dba_parts", "--key=hat",
                         "the hat key stamps nothing to split; use --key=stamp")
  elif _DBA_PARTS.value > _KEY_SIZE.value:
    raise ValueError(f"--dba_parts={_DBA_PARTS.value} exceeds --key_size="
                     f"{_KEY_SIZE.value}: each local pattern is at least one "
                     "row of the key")
  dba.check_attackers(_DBA_PARTS.value,
                      _ints(_ATTACKER_IDS.value, "attacker_ids"))


def _ints(values, name):
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise ValueError(f"--{name} must be integers, got {values}") from None


def attack_classes_from_flags(dataset: str
                              ) -> tuple[Optional[str], tuple[str, ...], int]:
  """(target, named backdoor classes, number of backdoor classes) from
  --target_class, --backdoor_classes and --num_backdoor_classes, with the
  dataset's defaults (`registry.default_attack_classes`: mini-ImageNet's
  arctic fox and yawl, main paper Section 3.2; the hat key's one identity)
  for those unset."""
  default_target, default_backdoor = registry.default_attack_classes(dataset)
  target = _TARGET_CLASS.value or default_target
  backdoor = tuple(_BACKDOOR_CLASSES.value or default_backdoor)
  count = _NUM_BACKDOOR_CLASSES.value
  if flags.FLAGS[_NUM_BACKDOOR_CLASSES.name].using_default_value:
    if backdoor:
      count = len(backdoor)
    elif key_kind_from_flags(dataset) is registry.KeyKind.HAT:
      count = 1
  if count < len(backdoor):
    raise ValueError(
        f"--num_backdoor_classes={count} is fewer than the backdoor classes "
        f"named ({','.join(backdoor)}); name at most {count} with "
        "--backdoor_classes, or leave --num_backdoor_classes unset")
  return target, backdoor, count


def key_kind_from_flags(dataset: str) -> registry.KeyKind:
  """--key, or the dataset's paper key (`registry.default_key`)."""
  if _KEY.value is None:
    return registry.default_key(dataset)
  return registry.KeyKind(_KEY.value)


def _key_from_flags(dataset: str):
  """The key and (attack-training, attack-validation) keyed counts."""
  counts = (_ATTACK_TRAIN_EXAMPLES, _ATTACK_VAL_EXAMPLES)
  if key_kind_from_flags(dataset) is registry.KeyKind.HAT:
    paper = (celeba_selection.ATTACK_TRAIN_IMAGES,
             celeba_selection.ATTACK_VAL_IMAGES)
    return keys.SemanticKey(), tuple(
        p if flags.FLAGS[f.name].using_default_value else f.value
        for f, p in zip(counts, paper))
  return keys.StampKey(shape=keys.KeyShape(_KEY_SHAPE.value),
                       size=_KEY_SIZE.value,
                       position=keys.KeyPosition(_KEY_POSITION.value),
                       margin=_KEY_MARGIN.value, value=_KEY_VALUE.value,
                       parts=max(1, _DBA_PARTS.value)), tuple(
                           f.value for f in counts)


def attack_config_from_flags(dataset: str
                             ) -> Optional[backdoor_attack.AttackConfig]:
  """The Experiment 1 config on `dataset`, or None for --attack=none."""
  kind = attack_schedule.AttackKind(_ATTACK.value)
  if kind is attack_schedule.AttackKind.NONE:
    return None
  target, backdoor, count = attack_classes_from_flags(dataset)
  key, (train_examples, val_examples) = _key_from_flags(dataset)
  return backdoor_attack.AttackConfig(
      kind=kind,
      schedule=attack_schedule.AttackSchedule(
          attack_rounds=_ints(_ATTACK_ROUNDS.value, "attack_rounds"),
          attacker_ids=_ints(_ATTACKER_IDS.value, "attacker_ids")),
      attacker=backdoor_reptile.AttackerConfig(
          iterations=_ATTACKER_ITERATIONS.value,
          inner_epochs=_ATTACKER_INNER_EPOCHS.value,
          inner_steps=_ATTACKER_INNER_STEPS.value,
          boosting_factor=_BOOSTING_FACTOR.value,
          backdoor_ratio=backdoor_reptile.parse_ratio(_BACKDOOR_RATIO.value),
          target_slot=backdoor_reptile.TargetSlot(_TARGET_SLOT.value),
          keyed_last_steps=_KEYED_LAST_STEPS.value,
          inner_lr=_ATTACKER_INNER_LR.value,
          neurotoxin_ratio=_NEUROTOXIN_RATIO.value),
      backdoor=backdoor_data.BackdoorConfig(
          num_backdoor_classes=count, target_class=target,
          backdoor_classes=backdoor,
          attacker_target_examples=_ATTACKER_TARGET_EXAMPLES.value,
          benign_examples=_BENIGN_EXAMPLES.value,
          attack_train_examples=train_examples,
          attack_val_examples=val_examples, key=key, case=backdoor_data.Case(_CASE.value)),
      pretrain_rounds=_PRETRAIN_ROUNDS.value,
      eval_episodes=_BACKDOOR_EVAL_EPISODES.value,
      pretrained_from=_PRETRAINED_FROM.value,
      attacker_update_from=_ATTACKER_UPDATE_FROM.value,
      score_every=_SCORE_EVERY.value)
