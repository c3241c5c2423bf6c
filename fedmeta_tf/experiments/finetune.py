"""Experiment 2: benign fine-tuning of the attacked model (Section 3.4).

Right after the one-shot attack, each benign client fine-tunes the attacked
global model for many iterations (the paper: 500, 10x the usual e) on
episodes of its *own* classes that include the target class (case (c): and a
correctly labelled backdoor class), with the learning rate of Experiment 1.
After every `curve_every` iterations we record main-task, backdoor
(attack-training / attack-validation) and meta-test accuracy, averaged over
`episodes` episodes (`evaluation/backdoor.py`).

Results go under `<run dir>/finetune/` (`finetune_k<K>/` with another K): `finetune_case_<c>.csv` (keyed by
step, columns `client<i>/<metric>`), TensorBoard events,
`experiment2.png` (Figs. 8-12 layout) and `summary.json`.

Resumable (issue #7): each (case, client) curve is kept in
`finetune/units/` when it finishes (`work_units.py`), so a killed run
re-run with the same command resumes at the first unfinished client.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, NamedTuple, Optional, Sequence

from absl import logging
import numpy as np

from fedmeta_tf.attacks import backdoor_data as bd
from fedmeta_tf.evaluation import backdoor as backdoor_eval
from fedmeta_tf.experiments import backdoor_attack
from fedmeta_tf.experiments import training
from fedmeta_tf.experiments import work_units
from fedmeta_tf.meta import weights as w
from fedmeta_tf.models import precision as precision_lib
from fedmeta_tf.reporting import figures
from fedmeta_tf.reporting import release

SUBDIR = "finetune"


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
  """Experiment 2's settings.

  Attributes:
    steps: fine-tuning iterations (the paper: 500).
    curve_every: record metrics every this many iterations.
    episodes: episodes per client the curves average (papers: 40).
    cases: cases to run; None: the run's case, and (c) too for a (b) run.
    clients: benign clients to run; None: all of them.
    checkpoint: which saved global model to fine-tune.
    shots: K, examples per class in the fine-tuning episodes' support sets;
      None: the run's evaluation shots (CelebA, Fig. 11: K = 15).
    precision: Keras dtype policy of the fine-tuned models
      (`models/precision.py`); float32 whatever the run's precision unless
      asked.
  """

  steps: int = 500
  curve_every: int = 10
  episodes: int = 40
  cases: Optional[Sequence[str]] = None
  clients: Optional[Sequence[int]] = None
  checkpoint: str = "attacked"
  shots: Optional[int] = None
  precision: str = "float32"

  def __post_init__(self):
    object.__setattr__(self, "precision",
                       precision_lib.parse_precision(self.precision).value)
    for name in ("steps", "curve_every", "episodes"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if self.shots is not None and self.shots <= 0:
      raise ValueError(f"shots must be positive, got {self.shots}")

  @property
  def subdir(self) -> str:
    """Where in the run directory the results go: finetune/, or
    finetune_k<K>/ for another K (so K = 5 and K = 15 of one run coexist)."""
    return SUBDIR if self.shots is None else f"{SUBDIR}_k{self.shots}"


def cases_for(run_case: bd.Case, requested) -> list[bd.Case]:
  """Cases a run supports: (a) only from an (a) run; (b), (c) from (b)/(c)."""
  if requested is None:
    return [bd.Case.A] if run_case is bd.Case.A else [bd.Case.B, bd.Case.C]
  cases = [bd.Case(c) for c in requested]
  for case in cases:
    if case.benign_train_on_backdoor != run_case.benign_train_on_backdoor:
      verb = "includes" if case.benign_train_on_backdoor else "excludes"
      raise ValueError(f"case ({case.value}) needs a run whose benign "
                       f"meta-training {verb} backdoor classes; this run is "
                       f"case ({run_case.value})")
  return cases


class RunSetup(NamedTuple):
  """What an experiment that starts from an Experiment 1 run needs."""
  train_config: Any
  attack: Any
  weights: list
  cases: list
  attack_split: Any
  clients: list


def load_run_setup(run_dir: str, *, checkpoint: str, cases, clients
                   ) -> RunSetup:
  """Loads an Experiment 1 run: its configs, the `checkpoint` weights, the
  cases to run and the benign clients (`clients`, default all of them)."""
  train_config, attack = backdoor_attack.load_run(run_dir)
  weights = backdoor_attack.load_weights(run_dir, checkpoint)
  cases = cases_for(attack.backdoor.case, cases)
  attack_split = backdoor_attack.load_attack_split(
      train_config, attack.backdoor, attack.schedule.attacker_ids)
  benign = [c for c in range(train_config.num_clients)
            if c not in attack.schedule.attacker_ids]
  clients = list(clients) if clients is not None else benign
  for c in clients:
    if c not in benign:
      raise ValueError(f"client {c} is not a benign client (benign: {benign})")
  return RunSetup(train_config, attack, weights, cases, attack_split, clients)


def weights_digest(weights) -> str:
  """A hash of model weights: cached units of another model are not reused."""
  return w.digest(weights)[:16]


def run_finetune(run_dir: str, config: FinetuneConfig, *,
                 overwrite: bool = False) -> dict:
  """Runs Experiment 2 from an Experiment 1 run directory.

  Finished (case, client) units of an earlier run with the same settings
  and model are reused; `overwrite` discards them first.
  """
  with precision_lib.policy(config.precision):
    return _run_finetune(run_dir, config, overwrite)


def _run_finetune(run_dir: str, config: FinetuneConfig,
                  overwrite: bool) -> dict:
  (train_config, attack, weights, cases, attack_split,
   clients) = load_run_setup(run_dir, checkpoint=config.checkpoint,
                             cases=config.cases, clients=config.clients)
  output_dir = os.path.join(run_dir, config.subdir)
  os.makedirs(output_dir, exist_ok=True)
  units = work_units.WorkUnits(
      os.path.join(output_dir, "units"),
      {"config": work_units.settings_key(dataclasses.asdict(config)),
       "cases": [c.value for c in cases],
       "clients": clients, "weights": weights_digest(weights)})
  if overwrite:
    units.clear()
  image_shape = attack_split.split.meta_train.image_shape
  model_fn = training.make_model_fn(train_config, image_shape)
  evaluation = dataclasses.replace(
      train_config.evaluation, steps=config.steps,
      shots=config.shots or train_config.evaluation.shots)
  train_config = dataclasses.replace(train_config, evaluation=evaluation)
  start = time.time()
  csv_by_case, summary = {}, {"steps": config.steps, "clients": clients,
                              "checkpoint": config.checkpoint,
                              "precision": config.precision, "final": {}}
  for case in cases:
    eval_config = backdoor_attack.backdoor_eval_config(
        train_config, config.episodes, case, curve_every=config.curve_every)
    columns = {}
    for client in clients:
      def client_curves(client=client, eval_config=eval_config):
        evaluator = backdoor_eval.BackdoorEvaluator(
            model_fn, config=eval_config,
            data=backdoor_attack.eval_data_for(attack_split, client),
            seed=train_config.seed, client=client)
        return evaluator.curves(weights)

      curves = units.get_or_compute(f"case_{case.value}_client{client}",
                                    client_curves)
      for name, values in curves.items():
        columns[f"client{client}/{name}"] = values
      summary["final"][f"{case.value}/client{client}"] = {
          k: float(v[-1]) for k, v in curves.items()}
      logging.info("case (%s) client %d after %d steps: %s (%.0f s)",
                   case.value, client, config.steps,
                   summary["final"][f"{case.value}/client{client}"],
                   time.time() - start)
    metrics = release.MetricsRelease(
        output_dir, name=f"finetune_case_{case.value}", key_fieldname="step")
    for i, step in enumerate(eval_config.curve_steps):
      metrics.release({k: float(v[i]) for k, v in columns.items()}, key=step)
    csv_by_case[case.value] = metrics.csv_path
  figures.plot_finetune(csv_by_case, clients,
                        os.path.join(output_dir, "experiment2.png"))
  summary["wall_seconds"] = time.time() - start
  release.write_json_atomically(os.path.join(output_dir, "summary.json"),
                                summary)
  return summary
