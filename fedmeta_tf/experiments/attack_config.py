"""Experiment 1's configuration and how a run directory keeps it.

`AttackConfig` (the attack on top of a `training.TrainingConfig`) is saved as
`experiment.json` (`to_jsonable`) and read back by the binaries that continue
a run (`load_run`: finetune, defend, prune); `check_pretrained_from` says
whether another run's pre-trained model fits this one.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from typing import Optional

from fedmeta_tf.attacks import backdoor_data as bd
from fedmeta_tf.attacks import backdoor_reptile
from fedmeta_tf.attacks import dba
from fedmeta_tf.attacks import kept_updates
from fedmeta_tf.attacks import keys as keys_lib
from fedmeta_tf.data import registry
from fedmeta_tf.evaluation import meta_test as meta_test_lib
from fedmeta_tf.experiments import attack_schedule as schedule_lib
from fedmeta_tf.experiments import training
from fedmeta_tf.meta import reptile_tf

EXPERIMENT_JSON = "experiment.json"


@dataclasses.dataclass(frozen=True)
class AttackConfig:
  """Experiment 1 on top of a `training.TrainingConfig`.

  Attributes:
    kind: boosted update or model replacement.
    schedule: attack rounds and attacker ids.
    attacker: the attacker's schedule, boosting and poisoning ratio.
    backdoor: reserved classes, key and case.
    pretrain_rounds: benign rounds before round 0.
    eval_episodes: episodes the backdoor metrics are averaged over.
    pretrained_from: a run directory whose checkpoints/pretrained.npz is
      used instead of pre-training (same dataset, seed and clients).
    score_every: the experiment rounds scored: round 0, every attack round,
      every `score_every`-th round and the last round (1: every round).
    attacker_update_from: a run directory whose kept attacker update
      (`attacks/kept_updates.py`) the attacker sends instead of training;
      the run's pre-trained model too (`pretrained_from` is set to it).
  """

  kind: schedule_lib.AttackKind = schedule_lib.AttackKind.BOOSTED
  schedule: schedule_lib.AttackSchedule = schedule_lib.AttackSchedule()
  attacker: backdoor_reptile.AttackerConfig = backdoor_reptile.AttackerConfig()
  backdoor: bd.BackdoorConfig = bd.BackdoorConfig()
  pretrain_rounds: int = 10
  eval_episodes: int = 40
  pretrained_from: Optional[str] = None
  attacker_update_from: Optional[str] = None
  score_every: int = 1

  def __post_init__(self):
    if self.score_every <= 0:
      raise ValueError(f"score_every must be positive, got {self.score_every}")
    if self.attacker_update_from:
      if self.pretrained_from not in (None, self.attacker_update_from):
        raise ValueError(
            f"--attacker_update_from={self.attacker_update_from} replays an "
            "attack on that run's pre-trained model: --pretrained_from must "
            f"be unset or the same run, got {self.pretrained_from}")
      object.__setattr__(self, "pretrained_from", self.attacker_update_from)
    if self.kind is schedule_lib.AttackKind.NONE:
      raise ValueError("an attack experiment needs an attack kind other than none")
    if self.pretrain_rounds < 0:
      raise ValueError(f"pretrain_rounds must be >= 0, got {self.pretrain_rounds}")
    if self.eval_episodes <= 0:
      raise ValueError(f"eval_episodes must be positive, got {self.eval_episodes}")
    if not self.backdoor.is_semantic:
      dba.check_attackers(self.backdoor.key.parts, self.schedule.attacker_ids)


  def scores(self, round_num: int, last_round: int) -> bool:
    """Whether experiment round `round_num` is scored (`score_every`)."""
    return (self.schedule.is_attack_round(round_num) or
            round_num % self.score_every == 0 or round_num == last_round)


# --- configs to and from JSON (read back by binaries/finetune.py) ---------

def to_jsonable(value):
  if dataclasses.is_dataclass(value):
    return {f.name: to_jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)}
  if isinstance(value, enum.Enum):
    return value.value
  if isinstance(value, (tuple, list)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  return value


def _key_from_json(d: dict):
  if "attribute" in d:
    return keys_lib.SemanticKey(attribute=d["attribute"])
  return keys_lib.StampKey(shape=keys_lib.KeyShape(d["shape"]), size=d["size"],
                           position=keys_lib.KeyPosition(d["position"]),
                           margin=d["margin"], value=d["value"],
                           parts=d.get("parts", 1), part=d.get("part"))


def configs_from_json(d: dict) -> tuple[training.TrainingConfig, AttackConfig]:
  t = dict(d["training"])
  t["reptile"] = reptile_tf.ReptileConfig(**t["reptile"])
  t["evaluation"] = meta_test_lib.EvalConfig(**t["evaluation"])
  t["runtime"] = training.Runtime(t["runtime"])
  t["protocol"] = registry.Protocol.from_json(t.get("protocol"), t["dataset"])
  a = dict(d["attack"])
  a["kind"] = schedule_lib.AttackKind(a["kind"])
  a["schedule"] = schedule_lib.AttackSchedule(
      attack_rounds=tuple(a["schedule"]["attack_rounds"]),
      attacker_ids=tuple(a["schedule"]["attacker_ids"]))
  att = dict(a["attacker"])
  att["backdoor_ratio"] = tuple(att["backdoor_ratio"])
  att["target_slot"] = backdoor_reptile.TargetSlot(att["target_slot"])
  a["attacker"] = backdoor_reptile.AttackerConfig(**att)
  b = dict(a["backdoor"])
  if b.pop("seed", t["seed"]) != t["seed"]:
    raise ValueError("this run directory was written by an older version "
                     "whose attack data did not follow --seed; run the attack "
                     "again")
  b["key"] = _key_from_json(b["key"])
  b["case"] = bd.Case(b["case"])
  a["backdoor"] = bd.BackdoorConfig(**b)
  return training.TrainingConfig(**t), AttackConfig(**a)


def load_run(run_dir: str) -> tuple[training.TrainingConfig, AttackConfig]:
  path = os.path.join(run_dir, EXPERIMENT_JSON)
  if not os.path.isfile(path):
    raise ValueError(f"{run_dir!r} is not an attack run directory (no "
                     f"{EXPERIMENT_JSON}); run binaries.train_fedmeta with "
                     "--attack first")
  with open(path) as f:
    return configs_from_json(json.load(f))


def check_pretrained_from(config: training.TrainingConfig,
                          attack: AttackConfig) -> None:
  """ValueError unless `attack.pretrained_from` pre-trained what this run
  would: same data, seed, federation, model and Reptile settings, the same
  pre-training length, and benign clients holding the same classes (cases
  (b) and (c) give them the backdoor classes, case (a) does not).
  The aggregator may differ (Experiment 3e starts from the FedAvg model)."""
  if not attack.pretrained_from:
    return
  source, source_attack = load_run(attack.pretrained_from)
  pairs = {name: (getattr(source, name), getattr(config, name)) for name in (
      "dataset", "seed", "num_clients", "clients_per_round", "reptile",
      "model_variant", "filters", "protocol")}
  pairs["pretrain_rounds"] = (source_attack.pretrain_rounds,
                              attack.pretrain_rounds)
  pairs["backdoor classes in benign training (case)"] = (
      source_attack.backdoor.case.benign_train_on_backdoor,
      attack.backdoor.case.benign_train_on_backdoor)
  pairs["backdoor reserved classes"] = (source_attack.backdoor.reservation,
                                        attack.backdoor.reservation)
  differ = [f"{name} {theirs} vs {ours}"
            for name, (theirs, ours) in pairs.items() if theirs != ours]
  if differ:
    raise ValueError(
        f"--pretrained_from={attack.pretrained_from}: that run pre-trained "
        f"under other settings ({'; '.join(differ)}); pre-train from scratch "
        "or point to a run with the same ones")
  if attack.attacker_update_from:
    _check_same_attack(config, attack, source_attack)


def _check_same_attack(config: training.TrainingConfig, attack: AttackConfig,
                       source: AttackConfig) -> None:
  """ValueError unless the run `attack.attacker_update_from` attacked as
  this one would (the update replayed is the one this attacker would send),
  on the in-process driver (the one that keeps and replays updates)."""
  flag = f"--attacker_update_from={attack.attacker_update_from}"
  if config.runtime is not training.Runtime.INPROCESS:
    raise ValueError(f"{flag} needs --runtime=inprocess (the TFF runtime "
                     "trains the attacker inside the round)")
  differ = [name for name in ("kind", "attacker", "backdoor")
            if getattr(source, name) != getattr(attack, name)]
  if source.schedule.attacker_ids != attack.schedule.attacker_ids:
    differ.append("attacker_ids")
  if differ:
    raise ValueError(f"{flag}: that run's attack differs in "
                     f"{', '.join(differ)}; replay needs the same attack "
                     "flags (only the aggregator and the rounds may differ)")
  if not kept_updates.kept_any(attack.attacker_update_from):
    kept = os.path.join(attack.attacker_update_from, kept_updates.SUBDIR)
    raise ValueError(f"{flag}: that run kept no attacker update ({kept} is "
                     "missing or empty: an in-process attack run keeps one "
                     "once its attack round is done)")
