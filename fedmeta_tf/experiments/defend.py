"""Experiment 3: the local defense after the attack (Section 4.2, appendix).

Starts from an Experiment 1 run directory (`experiments/backdoor_attack.py`)
and, like Experiment 2 (`experiments/finetune.py`), has every benign client
fine-tune the attacked global model on episodes of its own classes, with the
same metrics on the same episodes. What differs is how the client starts
and fine-tunes:

    theta' = delta * theta_G + (1 - delta) * theta_g        (`glorot_mix`)
    [3(d): E iterations of local Reptile on the client's own classes]
    matching / protonet: Algorithm 2 on f(theta')           (3(a), 3(b), A)
    supervised: Adam on the whole Conv4 theta', dense head  (3(c))

One run sweeps `deltas` (3(a): 0.3; 3(b) and Figs. 20-21: 0.6, 0.4, 0.2;
`auto`: a per-layer delta by our norm-ratio rule, `auto_delta.py`).
Results go under `<run dir>/defend/<name>/`: `delta<d>_case_<c>.csv`
(keyed by step, columns `client<i>/<metric>`), TensorBoard events,
`delta<d>.png` (Figs. 14-24 layout: a column per client, a row per case),
`delta_sweep.png` (final metrics against delta) when several deltas ran,
`saved_model/client<i>/` (the defended local model of the first delta,
metric heads only) and `summary.json`.

The unattacked baseline. A fixed target class draws keyed images below 1/N
(Omniglot: 4.5 % before the attack), so "back to chance" is not 1/N: the
same defense and evaluation (same deltas, clients, episodes) also run from
the pre-trained, unattacked model (`unattacked_delta<d>_case_<c>.csv`,
`summary.json`'s `unattacked_final`), drawn dashed beside the attacked
curves. A backdoor is removed when the defended attacked model is back at
the defended unattacked model's level.

Resumable (issue #7): each client's start model (3(d)'s local
meta-training) and each (case, delta, client) curve is kept in
`units/` when it finishes (`experiments/work_units.py`), so a killed run
re-run with the same command resumes at the first unfinished unit.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
import shutil
import time
from typing import Callable, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from fedmeta_tf.data import episodes as episodes_lib
from fedmeta_tf.defenses.local import auto_delta
from fedmeta_tf.defenses.local import export as defense_export
from fedmeta_tf.defenses.local import glorot_mix
from fedmeta_tf.defenses.local import secure_fine_tuning as sft
from fedmeta_tf.defenses.local import sweep_figure
from fedmeta_tf.evaluation import backdoor as backdoor_eval
from fedmeta_tf.evaluation import defended as defense_eval
from fedmeta_tf.evaluation import episodes_eval
from fedmeta_tf.experiments import backdoor_attack
from fedmeta_tf.experiments import finetune
from fedmeta_tf.experiments import training
from fedmeta_tf.experiments import work_units
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import weights as w
from fedmeta_tf.models import precision as precision_lib
from fedmeta_tf.reporting import figures
from fedmeta_tf.reporting import release

SUBDIR = "defend"
PRETRAINED = "pretrained"  # the unattacked model's checkpoint
UNATTACKED = "unattacked_"  # prefix of the unattacked baseline's outputs
STREAM_LOCAL_META = 21
STREAM_EXPORT = 0xE  # Algorithm 2 on the exported model's episode
_delta_label = auto_delta.delta_label  # "delta0.3", "deltaauto"


class Defense(enum.Enum):
  MATCHING = "matching"  # Algorithm 2, Experiments 3(a), 3(b), 3(d)
  PROTONET = "protonet"  # appendix, Figs. 35-36
  SUPERVISED = "supervised"  # Glorot mix, dense head: Experiment 3(c)


@dataclasses.dataclass(frozen=True)
class DefendConfig:
  """Experiment 3's settings.

  Attributes:
    defense: how clients fine-tune after the Glorot mix.
    deltas: the deltas to sweep; "auto": per-layer deltas (`auto_delta`).
    auto_delta_ratio: r, the global/noise norm ratio of `auto` (ours).
    steps: fine-tuning iterations.
    head_only_steps: first iterations training alpha, beta only.
    batch: queries (or examples) per iteration; None: the run's b.
    learning_rate: eta; None: the run's fine-tuning rate.
    curve_every: record metrics every this many iterations.
    episodes: episodes per client the curves average.
    cases, clients, checkpoint: as `finetune.FinetuneConfig`.
    local_meta_iterations: 3(d)'s E, local Reptile iterations after the mix
      (0: none).
    leave_one_out: training queries may not match themselves.
    initial_scale: the head's initial beta; None: the head's default.
    export: write each client's defended model (metric heads).
    name: sub-directory under defend/; None: derived from the settings.
    precision: Keras dtype policy of the defended models
      (`models/precision.py`); float32 whatever the run's precision unless
      asked.
  """

  defense: Defense = Defense.MATCHING
  deltas: Sequence[auto_delta.Delta] = (0.3,)
  steps: int = 50
  head_only_steps: int = 5
  batch: Optional[int] = None
  learning_rate: Optional[float] = None
  curve_every: int = 5
  episodes: int = 40
  cases: Optional[Sequence[str]] = None
  clients: Optional[Sequence[int]] = None
  checkpoint: str = "attacked"
  local_meta_iterations: int = 0
  leave_one_out: bool = True
  initial_scale: Optional[float] = None
  export: bool = True
  name: Optional[str] = None
  auto_delta_ratio: float = auto_delta.DEFAULT_RATIO
  precision: str = "float32"

  def __post_init__(self):
    object.__setattr__(self, "precision",
                       precision_lib.parse_precision(self.precision).value)
    object.__setattr__(self, "defense", Defense(self.defense))
    object.__setattr__(self, "deltas", tuple(
        auto_delta.parse_delta(d) for d in self.deltas))
    if not self.deltas:
      raise ValueError("deltas must name at least one delta")
    auto_delta.check_ratio(self.auto_delta_ratio)
    for name in ("steps", "curve_every", "episodes"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if self.local_meta_iterations < 0:
      raise ValueError(f"local_meta_iterations must be >= 0, got "
                       f"{self.local_meta_iterations}")

  @property
  def run_name(self) -> str:
    if self.name:
      return self.name
    local = (f"_local{self.local_meta_iterations}"
             if self.local_meta_iterations else "")
    return f"{self.defense.value}{local}"


def local_meta_train(model_fn, weights, pool: np.ndarray,
                     config: reptile_tf.ReptileConfig, *, iterations: int,
                     seed) -> list[np.ndarray]:
  """Experiment 3(d): `iterations` of Algorithm 1's client work on the
  client's own classes, applied locally (theta + u); nothing is sent."""
  model, optimizer = reptile_tf.make_learner(model_fn, config.inner_lr)
  episode_fn = reptile_tf.pool_episode_fn(tf.constant(pool), config)

  @tf.function
  def run(theta):
    update, _ = reptile_tf.reptile_client_update(
        model, optimizer, theta, config=config,
        plan=reptile_tf.ReptilePlan(episode_fn=episode_fn, seed=seed,
                                    iterations=iterations))
    return w.add(theta, update)

  return [v.numpy() for v in run([tf.constant(v) for v in weights])]


def _export_client_model(evaluator: defense_eval.DefenseEvaluator,
                         features, data, *, seed: int, client: int,
                         path: str) -> None:
  """Algorithm 2 on the client's first evaluation episode, then export."""
  learner = evaluator.learner
  ep = evaluator.config.episode
  episode, _ = backdoor_eval.main_task_episode(data, evaluator.config,
                                               seed=seed, client=client)
  tf.function(learner.fine_tune)(
      [tf.constant(v) for v in features], episode.support_images,
      episode.support_labels, episodes_lib.fold_seed(
          episodes_eval.client_seed(seed, client), STREAM_EXPORT))
  defense_export.export_defended_model(
      learner.classifier, support_images=episode.support_images,
      support_labels=episode.support_labels, num_classes=ep.ways, path=path)


@dataclasses.dataclass(frozen=True)
class _DefendRun:
  """What every unit of one `run_defend` call shares."""
  config: DefendConfig
  train_config: training.TrainingConfig  # Evaluation set to the defense's.
  attack_split: backdoor_attack.AttackSplit
  cases: list
  clients: list
  output_dir: str
  units: work_units.WorkUnits
  model_fn: Callable
  arch: dict  # glorot_mix's architecture arguments.
  defense: Optional[sft.DefenseConfig]  # None: supervised (3(c)).
  start: float


def _setup(run_dir: str, config: DefendConfig, overwrite: bool) -> tuple[
    _DefendRun, list]:
  """Loads the Experiment 1 run, opens the units; the run and its weights."""
  (train_config, _, weights, cases, attack_split,
   clients) = finetune.load_run_setup(run_dir, checkpoint=config.checkpoint,
                                      cases=config.cases,
                                      clients=config.clients)
  output_dir = os.path.join(run_dir, SUBDIR, config.run_name)
  if overwrite:
    shutil.rmtree(output_dir, ignore_errors=True)
  os.makedirs(output_dir, exist_ok=True)
  units = work_units.WorkUnits(
      os.path.join(output_dir, "units"),
      {"config": work_units.settings_key(
          auto_delta.fingerprint_config(dataclasses.asdict(config))),
       "cases": [c.value for c in cases],
       "clients": clients, "weights": finetune.weights_digest(weights)})
  image_shape = attack_split.split.meta_train.image_shape
  model_fn = training.make_model_fn(train_config, image_shape)
  arch = dict(image_shape=image_shape, num_classes=train_config.reptile.ways,
              variant=train_config.model_variant, filters=train_config.filters)
  default = train_config.evaluation
  evaluation = dataclasses.replace(
      default, steps=config.steps, batch=config.batch or default.batch,
      learning_rate=config.learning_rate or default.learning_rate)
  train_config = dataclasses.replace(train_config, evaluation=evaluation)
  defense = None
  if config.defense is not Defense.SUPERVISED:
    defense = sft.DefenseConfig(
        head=config.defense.value, steps=config.steps,
        head_only_steps=config.head_only_steps, batch=evaluation.batch,
        learning_rate=evaluation.learning_rate,
        leave_one_out=config.leave_one_out, initial_scale=config.initial_scale)
  run = _DefendRun(config, train_config, attack_split, cases, clients,
                   output_dir, units, model_fn, arch, defense, time.time())
  return run, weights


def _start_weights(run: _DefendRun, weights, prefix: str = "",
                   used: Optional[dict] = None) -> dict:
  """theta' per (delta, client): the Glorot mix, then 3(d)'s local
  meta-training if asked; the same for every case. `prefix` names the
  model's units ("" attacked, UNATTACKED the baseline); `used` receives
  `auto`'s per-layer deltas, {"client<i>": {variable: delta}}."""
  config, train_config = run.config, run.train_config
  starts = {}
  for delta in config.deltas:
    for client in run.clients:
      theta, layers = auto_delta.start_mix(
          weights, delta, ratio=config.auto_delta_ratio,
          seed=train_config.seed, client=client, arch=run.arch)
      if layers and used is not None:
        used[f"client{client}"] = layers
      if config.local_meta_iterations:
        theta = run.units.get_or_compute_weights(
            f"{prefix}start_{_delta_label(delta)}_client{client}",
            functools.partial(
                local_meta_train, run.model_fn, theta,
                run.attack_split.client_pools[client], train_config.reptile,
                iterations=config.local_meta_iterations,
                seed=episodes_lib.fold_seed(train_config.seed,
                                            STREAM_LOCAL_META, client)))
      starts[delta, client] = theta
  return starts


def _client_curves(run: _DefendRun, evaluator, eval_config, *, case,
                   delta: float, client: int, theta, prefix: str) -> dict:
  """One (case, delta, client) unit's curves on Experiment 2's episodes
  (episodes_eval.evaluation_seed); exports the client's defended model for
  the first case and delta (of the attacked model)."""
  seed = run.train_config.seed
  data = backdoor_attack.eval_data_for(run.attack_split, client)
  features = (None if evaluator is None else
              glorot_mix.feature_part(theta, **run.arch))

  def client_curves():
    if evaluator is None:
      return backdoor_eval.BackdoorEvaluator(
          run.model_fn, config=eval_config, data=data, seed=seed,
          client=client).curves(theta)
    return evaluator.curves(features, data=data, seed=seed, client=client)

  curves = run.units.get_or_compute(
      f"{prefix}{_delta_label(delta)}_case_{case.value}_client{client}",
      client_curves)
  export_path = os.path.join(run.output_dir, "saved_model", f"client{client}")
  if (evaluator is not None and run.config.export and not prefix and
      delta == run.config.deltas[0] and case == run.cases[0] and
      not os.path.isdir(export_path)):
    _export_client_model(evaluator, features, data, seed=seed, client=client,
                         path=export_path)
  return curves


def _run_case(run: _DefendRun, case, starts: dict, final: dict,
              prefix: str = "") -> dict:
  """Every delta and client of one case, from `starts` (of the model
  `prefix` names): records their final metrics in `final`, writes a CSV per
  delta; returns {delta: csv path}."""
  config = run.config
  eval_config = backdoor_attack.backdoor_eval_config(
      run.train_config, config.episodes, case, curve_every=config.curve_every)
  evaluator = None
  if run.defense is not None:
    evaluator = defense_eval.DefenseEvaluator(
        image_shape=run.arch["image_shape"], config=eval_config,
        defense=run.defense, variant=run.train_config.model_variant,
        filters=run.train_config.filters)
  csv_paths = {}
  for delta in config.deltas:
    columns = {}
    for client in run.clients:
      curves = _client_curves(run, evaluator, eval_config, case=case,
                              delta=delta, client=client,
                              theta=starts[delta, client], prefix=prefix)
      for name, values in curves.items():
        columns[f"client{client}/{name}"] = values
      last = {k: float(v[-1]) for k, v in curves.items()}
      final[f"{_delta_label(delta)}/{case.value}/client{client}"] = last
      logging.info("%s%s %s case (%s) client %d after %d steps: %s "
                   "(%.0f s)", prefix, config.defense.value,
                   _delta_label(delta),
                   case.value, client, config.steps, last,
                   time.time() - run.start)
    metrics = release.MetricsRelease(
        run.output_dir,
        name=f"{prefix}{_delta_label(delta)}_case_{case.value}",
        key_fieldname="step")
    for i, step in enumerate(eval_config.curve_steps):
      metrics.release({k: float(v[i]) for k, v in columns.items()}, key=step)
    csv_paths[delta] = metrics.csv_path
  return csv_paths


def run_defend(run_dir: str, config: DefendConfig, *,
               overwrite: bool = False) -> dict:
  """Runs Experiment 3 from an Experiment 1 run directory.

  Finished units of an earlier run with the same settings and model are
  reused; `overwrite` discards them (and the exported models) first.
  """
  with precision_lib.policy(config.precision):
    return _run_defend(run_dir, config, overwrite)


def _run_defend(run_dir: str, config: DefendConfig, overwrite: bool) -> dict:
  run, weights = _setup(run_dir, config, overwrite)
  summary = {"defense": config.defense.value, "steps": config.steps,
             "deltas": list(config.deltas), "clients": run.clients,
             "checkpoint": config.checkpoint,
             "local_meta_iterations": config.local_meta_iterations,
             "precision": config.precision, "final": {}}
  models = {"": weights}
  if config.checkpoint != PRETRAINED:
    models[UNATTACKED] = backdoor_attack.load_weights(run_dir, PRETRAINED)
    summary["unattacked_final"] = {}
  csv_by_delta = {prefix: {} for prefix in models}
  summary.update(auto_delta.summary_fields(
      config.deltas, config.auto_delta_ratio, prefixes=list(models)))
  for prefix, model_weights in models.items():
    starts = _start_weights(run, model_weights, prefix,
                            summary.get(f"{prefix}auto_delta"))
    final = summary["unattacked_final" if prefix else "final"]
    for case in run.cases:
      for delta, path in _run_case(run, case, starts, final, prefix).items():
        csv_by_delta[prefix].setdefault(delta, {})[case.value] = path

  for delta, csv_by_case in csv_by_delta[""].items():
    figures.plot_finetune(
        csv_by_case, run.clients,
        os.path.join(run.output_dir, f"{_delta_label(delta)}.png"),
        reference=csv_by_delta.get(UNATTACKED, {}).get(delta),
        reference_label="unattacked")
  if len(config.deltas) > 1:
    sweep_figure.plot_sweep_file(
        os.path.join(run.output_dir, "delta_sweep.png"), summary["final"],
        finetune_summary=os.path.join(run_dir, finetune.SUBDIR,
                                      "summary.json"),
        steps=config.steps, clients=run.clients, title=config.run_name,
        unattacked=summary.get("unattacked_final"),
        auto_at=auto_delta.mean_delta(summary.get("auto_delta", {})))
  summary["mean_over_clients"] = sweep_figure.mean_over_clients(
      summary["final"])
  if UNATTACKED in models:
    summary["unattacked_mean_over_clients"] = sweep_figure.mean_over_clients(
        summary["unattacked_final"])
  summary["wall_seconds"] = time.time() - run.start
  release.write_json_atomically(os.path.join(run.output_dir, "summary.json"),
                                summary)
  return summary
