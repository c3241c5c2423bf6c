"""Experiment 1: pre-train, attack once, keep training benignly (Section 3.4).

    pre-training: `pretrain_rounds` benign rounds   -> round 0 (pre-trained)
    round 1 (default): the attacker + M_min - 1 benign clients
    rounds 2..R: benign rounds

Every round (from round 0) the global model is scored with
`evaluation/backdoor.py` (main-task, backdoor attack-training /
attack-validation, meta-test accuracy). Run directory (see docs/attack.md):

    experiment.json        the configs (reloaded by binaries/finetune.py)
    backdoor_data.npz      target / backdoor / keyed images (`BackdoorData`)
    pretrain_metrics.csv   meta-test accuracy during pre-training
    metrics.csv            all metrics per round, round 0 = pre-trained
    tensorboard/           the same series
    checkpoints/{pretrained,attacked,final}.npz   global weights
    saved_model/{pretrained,attacked,final}/      SavedModels
    checkpoints/round_<n>/ the server state per server round (resume)
    timing.csv             seconds per server round
    experiment1.png        Fig. 4-7 layout (one panel: this run's case)
    summary.json
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from absl import logging
import numpy as np

from fedmeta_tf.attacks import backdoor_data as bd
from fedmeta_tf.attacks import backdoor_reptile
from fedmeta_tf.attacks import dba
from fedmeta_tf.attacks import kept_updates
from fedmeta_tf.data import protocol as protocol_lib
from fedmeta_tf.data import registry
from fedmeta_tf.evaluation import backdoor as backdoor_eval
from fedmeta_tf.experiments import attack_config
from fedmeta_tf.experiments import attack_schedule as schedule_lib
from fedmeta_tf.experiments import rounds
from fedmeta_tf.experiments import runners
from fedmeta_tf.experiments import training
from fedmeta_tf.reporting import figures
from fedmeta_tf.reporting import release

# The configuration and its JSON live in attack_config; re-exported here.
AttackConfig = attack_config.AttackConfig
EXPERIMENT_JSON = attack_config.EXPERIMENT_JSON
load_run = attack_config.load_run
configs_from_json = attack_config.configs_from_json
check_pretrained_from = attack_config.check_pretrained_from

CHECKPOINTS = "checkpoints"
DATA_NPZ = "backdoor_data.npz"


@dataclasses.dataclass(frozen=True)
class AttackSplit:
  split: protocol_lib.MetaSplit
  data: bd.BackdoorData
  client_pools: list


def load_attack_split(config: training.TrainingConfig,
                      backdoor: bd.BackdoorConfig,
                      attacker_ids) -> AttackSplit:
  """The protocol of `training.load_split` with the attack classes reserved
  first (Section 3.3: 1623 - 5 = 1200 meta-train + 418 meta-test). A
  semantic key (CelebA's hat) takes its backdoor and target classes and
  keyed images from the dataset (`registry.load_semantic_backdoor`)."""
  load = dict(seed=config.seed, protocol=config.protocol,
              reserved=backdoor.num_backdoor_classes + 1)
  target, named, keyed = backdoor.target_class, backdoor.backdoor_classes, None
  if backdoor.is_semantic:
    pool, semantic = registry.load_semantic_backdoor(
        config.dataset, config.data_dir, attribute=backdoor.key.attribute,
        train_images=backdoor.attack_train_examples,
        val_images=backdoor.attack_val_examples,
        backdoor_class=next(iter(named), None), target_class=target, **load)
    target, named = semantic.target_class, (semantic.backdoor_class,)
    keyed = (semantic.keyed_train, semantic.keyed_val)
    logging.info("%s", semantic.description)
  else:
    pool = registry.load_dataset(config.dataset, config.data_dir, **load)
  rest, reserved = bd.reserve_classes(
      pool, num_backdoor_classes=backdoor.num_backdoor_classes,
      seed=config.seed, target_class=target, backdoor_classes=named)
  split = protocol_lib.split_by_protocol(
      rest, config.protocol, dataset=config.dataset,
      num_clients=config.num_clients, seed=config.seed,
      reserved=reserved.num_classes)
  training.check_split_fits(split, config)
  data = bd.build_backdoor_data(reserved, backdoor, seed=config.seed,
                                keyed=keyed)
  pools = bd.make_client_pools(split, data, backdoor.case,
                               attacker_ids=set(attacker_ids))
  return AttackSplit(split=split, data=data, client_pools=pools)


def backdoor_eval_config(config: training.TrainingConfig, episodes: int,
                         case: bd.Case, curve_every=None
                         ) -> backdoor_eval.BackdoorEvalConfig:
  return backdoor_eval.BackdoorEvalConfig(
      episode=dataclasses.replace(config.evaluation, episodes=episodes),
      curve_every=curve_every, backdoor_in_episode=case.backdoor_in_finetuning)


def eval_data_for(attack_split: AttackSplit,
                  client: Optional[int] = None) -> dict:
  """The backdoor evaluation's data: main-task episodes of the server's
  meta-training classes (`client` None, Experiment 1) or of one client's
  own classes (Experiments 2 and 3), support from their training examples
  and queries from their held-out ones."""
  data, split = attack_split.data, attack_split.split
  classes = (slice(None) if client is None else split.client_classes[client])
  return backdoor_eval.eval_data(
      main_support=split.meta_train.images[classes],
      main_queries=split.meta_train_heldout.images[classes],
      target_support=data.target_benign, target_queries=data.target_attacker,
      backdoor_pool=data.backdoor_benign, attack_train=data.attack_train,
      attack_val=data.attack_val, meta_test_pool=split.meta_test.images)


def keep(run_dir: str, name: str, weights, model) -> None:
  """Keeps global model `name`: checkpoints/<name>.npz and a SavedModel."""
  rounds.keep_model(os.path.join(run_dir, CHECKPOINTS, f"{name}.npz"), weights,
                    model=model,
                    saved_model_dir=os.path.join(run_dir, "saved_model", name))


def load_weights(run_dir: str, name: str) -> list[np.ndarray]:
  path = os.path.join(run_dir, CHECKPOINTS, f"{name}.npz")
  if not os.path.isfile(path):
    raise ValueError(f"no checkpoint {path!r}")
  return release.load_weights(path)


# --- the experiment ---------------------------------------------------------

def run_attack_experiment(
    config: training.TrainingConfig, attack: AttackConfig, output_dir: str, *,
    client_chunk: int = runners.DEFAULT_CLIENT_CHUNK) -> dict[str, Any]:
  """Runs Experiment 1 and writes the run directory (module docstring);
  `client_chunk` as in `runners.make_runner`."""
  os.makedirs(output_dir, exist_ok=True)
  attack.schedule.check(num_clients=config.num_clients,
                        clients_per_round=config.clients_per_round,
                        min_updates=config.min_updates)
  release.write_json_atomically(
      os.path.join(output_dir, EXPERIMENT_JSON),
      {"training": attack_config.to_jsonable(config), "attack": attack_config.to_jsonable(attack)})
  attack_split = load_attack_split(config, attack.backdoor,
                                   attack.schedule.attacker_ids)
  attack_split.data.save(os.path.join(output_dir, DATA_NPZ))
  logging.info("data: %s; %s", attack_split.split.describe(),
               attack_split.data.describe())
  image_shape = attack_split.split.meta_train.image_shape
  factor = schedule_lib.boosting_factor(
      attack.kind, attack.attacker.boosting_factor,
      min_updates=config.min_updates)
  model_fn = training.make_model_fn(config, image_shape)
  client_work = backdoor_reptile.BackdoorReptile(
      config=config.reptile, run_seed=config.seed,
      client_pools=attack_split.client_pools,
      attacker=dataclasses.replace(attack.attacker, boosting_factor=factor),
      attacker_ids=attack.schedule.attacker_ids,
      target_images=attack_split.data.target_attacker,
      backdoor_images=attack_split.data.attack_train,
      attacker_backdoor_images=dba.attacker_images(
          attack_split.data, attack.schedule.attacker_ids),
      model_fn=model_fn, kept_updates=_kept_updates(config, attack,
                                                    output_dir))
  runner = training.make_runner(config, client_work, model_fn, image_shape,
                                output_dir=output_dir,
                                client_chunk=client_chunk)
  evaluator = backdoor_eval.BackdoorEvaluator(
      model_fn, config=backdoor_eval_config(config, attack.eval_episodes,
                                            attack.backdoor.case),
      data=eval_data_for(attack_split), seed=config.seed)
  loop = rounds.RoundLoop(runner.initialize(), output_dir=output_dir,
                          extra={"attacked_saved": 0},
                          checkpoint_dir=os.path.join(output_dir, CHECKPOINTS),
                          timing_key="server_round")
  state = loop.run(attack_rounds(config, attack, runner, evaluator, loop,
                                 output_dir))
  keep(output_dir, "final", runner.weights(state), evaluator.model)
  metrics_csv = os.path.join(output_dir, "metrics.csv")
  rows = read_metrics_csv(metrics_csv)
  figures.plot_rounds({attack.backdoor.case.value: metrics_csv},
                      os.path.join(output_dir, "experiment1.png"))
  summary = {"case": attack.backdoor.case.value, "rounds": config.rounds,
             "wall_seconds": loop.seconds, "metrics": rows,
             "boosting_factor": factor}
  release.write_json_atomically(os.path.join(output_dir, "summary.json"),
                                summary)
  return summary


def _kept_updates(config: training.TrainingConfig, attack: AttackConfig,
                  output_dir: str) -> Optional[kept_updates.KeptUpdates]:
  """The in-process driver keeps the attackers' updates in the run
  directory, or replays those of `attack.attacker_update_from`."""
  if config.runtime is not training.Runtime.INPROCESS:
    return None
  if attack.attacker_update_from:
    return kept_updates.KeptUpdates(attack.attacker_update_from,
                                    replaying=True)
  return kept_updates.KeptUpdates(output_dir, replaying=False)


def attack_rounds(config: training.TrainingConfig, attack: AttackConfig,
                  runner, evaluator: backdoor_eval.BackdoorEvaluator,
                  loop: rounds.RoundLoop, output_dir: str
                  ) -> list[rounds.Round]:
  """Experiment 1's schedule (module docstring) on one server-round counter.

  Pre-training rounds are server rounds 1..P; experiment round r is server
  round P + r. Version P of the checkpoints is the pre-trained model, kept
  and scored as round 0 (the last pre-training round is saved with it).
  Experiment rounds are scored as `attack.score_every` says (default every
  round; metrics.csv leaves the others' metrics blank); the first attack
  round's model is kept (`loop.extra["attacked_saved"]` says it is). Client
  selection counts server rounds from `attack.pretrain_rounds` even when the
  pre-trained model comes from `attack.pretrained_from`.
  """
  pretrain_rounds = 0 if attack.pretrained_from else attack.pretrain_rounds
  federation = dict(num_clients=config.num_clients,
                    clients_per_round=config.clients_per_round,
                    min_updates=config.min_updates)
  benign_only = schedule_lib.AttackSchedule(
      attack_rounds=(), attacker_ids=attack.schedule.attacker_ids)

  def pretrain(r):
    def step(state):
      clients = benign_only.clients(seed=config.seed, round_num=r,
                                    server_round=r, **federation)
      state, round_metrics = runner.next(state, clients)
      row = {"clients": " ".join(map(str, clients)), **round_metrics}
      # The last pre-training round is evaluated as round 0.
      if r % config.eval_every == 0 and r != pretrain_rounds:
        row.update(evaluator(runner.weights(state)))
      return state, row
    return step

  def experiment(r):
    def step(state):
      clients = attack.schedule.clients(
          seed=config.seed, round_num=r,
          server_round=attack.pretrain_rounds + r, **federation)
      state, round_metrics = runner.next(state, clients)
      is_attack = int(attack.schedule.is_attack_round(r))
      row = {"clients": " ".join(map(str, clients)), "attack": is_attack,
             **round_metrics, **(evaluator(runner.weights(state)) if
                                 attack.scores(r, config.rounds) else {})}
      if is_attack and not loop.extra["attacked_saved"]:
        keep(output_dir, "attacked", runner.weights(state), evaluator.model)
        loop.extra["attacked_saved"] = 1
      return state, row
    return step

  pre = (release.MetricsRelease(output_dir, name="pretrain_metrics")
         if pretrain_rounds else None)
  metrics = release.MetricsRelease(output_dir)
  schedule = [rounds.Round(r, r, pretrain(r), pre, "pre-training round",
                           checkpoint=r != pretrain_rounds)
              for r in range(1, pretrain_rounds + 1)]
  schedule.append(rounds.Round(pretrain_rounds, 0, _pretrained_step(
      attack, runner, evaluator, output_dir), metrics))
  return schedule + [rounds.Round(pretrain_rounds + r, r, experiment(r),
                                  metrics) for r in range(1, config.rounds + 1)]


def _pretrained_step(attack: AttackConfig, runner, evaluator, output_dir):
  """Round 0: the pre-trained model (this run's or from `pretrained_from`),
  kept and scored."""
  def step(state):
    if attack.pretrained_from:
      state = runner.with_weights(
          state, load_weights(attack.pretrained_from, "pretrained"))
      logging.info("pre-trained model from %s", attack.pretrained_from)
    keep(output_dir, "pretrained", runner.weights(state), evaluator.model)
    return state, {"clients": "", "attack": 0,
                   **evaluator(runner.weights(state))}
  return step


def read_metrics_csv(path: str) -> list[dict[str, Any]]:
  """The rows of a metrics CSV, numbers as numbers (keyed by "round")."""
  def value(text):
    try:
      number = float(text)
    except ValueError:
      return text
    return int(number) if number.is_integer() and "." not in text else number

  return [{k: value(v) for k, v in row.items()}
          for row in figures.read_csv(path)]


def describe_summary(summary: dict, output_dir: str) -> str:
  """One line per reported round: the figures the acceptance checks."""
  lines = [f"Experiment 1, case ({summary['case']}), "
           f"{summary['wall_seconds']:.0f} s; results in {output_dir}"]
  for row in summary["metrics"]:
    if row.get("meta_test_accuracy") in (None, ""):
      continue  # a round --score_every did not score
    lines.append(
        f"round {row['round']:3d}{' (attack)' if row.get('attack') else '':9s}"
        f" main-task {row['main_task_accuracy']:.3f}  backdoor train "
        f"{row['backdoor_train_accuracy']:.3f} / val "
        f"{row['backdoor_val_accuracy']:.3f}  meta-test "
        f"{row['meta_test_accuracy']:.3f}")
  return "\n".join(lines)
