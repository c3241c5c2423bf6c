"""One table of every defense against the same one-shot boosted attack.

Starts from an Experiment 1 run of the in-process driver (the *source*,
`backdoor_attack.py`), which kept its attacker's update
(`attacks/kept_updates.py`). Every row meets that attack:

  server rows   one per `--server_defense` (an aggregator spec): the
                source's experiment again with that aggregator, from the
                source's pre-trained model, the source's attacker update
                replayed in the attack round (`--attacker_update_from`),
                then the source's benign rounds. The defense acts from the
                attack round on (pre-training used the source's aggregator).
                Metrics: Experiment 1's server evaluation (main paper,
                Section 3.4) right after the attack and at the last round
                (the rounds between are not scored: `--score_every`).
  local rows    one per `--local_delta`: the local matching defense
                (`defend.py`, Section 4.2) of the benign clients, on the
                first server row's global model after the attack and at
                the last round. Metrics: Experiment 3's, averaged over the
                benign clients, beside the same defense from the unattacked
                pre-trained model.

Rows are run directories under `<source>/defense_table/`: a row whose run
finished is read, not re-run; an interrupted one resumes (round and unit
checkpoints). The page and figure are `reporting/defense_table_page.py`'s.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Sequence

from absl import logging

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.attacks import kept_updates
from fedmeta_tf.defenses.local import auto_delta
from fedmeta_tf.experiments import attack_config
from fedmeta_tf.experiments import backdoor_attack
from fedmeta_tf.experiments import defend

SUBDIR = "defense_table"
BACKDOOR = ("backdoor_train_accuracy", "backdoor_val_accuracy")
META_TEST = "meta_test_accuracy"


@dataclasses.dataclass(frozen=True)
class TableConfig:
  """The rows of the table.

  Attributes:
    server_defenses: aggregator specs (`aggregators.parse_aggregator`), one
      row each; the first is the reference the others are compared with
      (the undefended secure mean).
    local_deltas: deltas of the local matching defense, one row each
      ("auto": `auto_delta.py`); empty: no local rows.
    local_steps, local_episodes: the local defense's fine-tuning iterations
      and episodes per benign client (`defend.DefendConfig`).
  """

  server_defenses: Sequence[str] = ("secure_mean",)
  local_deltas: Sequence[auto_delta.Delta] = (0.3, "auto")
  local_steps: int = 50
  local_episodes: int = 10

  def __post_init__(self):
    if not self.server_defenses:
      raise ValueError("the table needs at least one server defense (the "
                       "first, e.g. secure_mean, is the undefended reference)")
    if len(set(self.server_defenses)) != len(self.server_defenses):
      raise ValueError(f"server defenses repeat: {list(self.server_defenses)}")
    for spec in self.server_defenses:
      aggregators.parse_aggregator(spec)
    object.__setattr__(self, "local_deltas", tuple(
        auto_delta.parse_delta(d) for d in self.local_deltas))
    for name in ("local_steps", "local_episodes"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    self.defend_config("attacked", "a")  # its errors before any row runs

  def defend_config(self, checkpoint: str, case: str) -> defend.DefendConfig:
    """The local rows' defense (defend.py's defaults otherwise: 5 head-only
    steps, leave-one-out) on the `checkpoint` model in `case`."""
    return defend.DefendConfig(
        deltas=self.local_deltas, steps=self.local_steps,
        curve_every=self.local_steps, episodes=self.local_episodes,
        cases=(case,), checkpoint=checkpoint, export=False,
        name=f"table_{checkpoint}")


def row_dir(source: str, spec: str) -> str:
  """`<source>/defense_table/<spec with : = , as _>`."""
  return os.path.join(source, SUBDIR, re.sub(r"[:=,]", "_", spec))


def check_source(source: str) -> None:
  """ValueError unless `source` is an attack run that kept its attacker's
  update (an in-process run past its attack round)."""
  config, _ = attack_config.load_run(source)
  if not kept_updates.kept_any(source):
    kept = os.path.join(source, kept_updates.SUBDIR)
    raise ValueError(
        f"--from={source}: no kept attacker update ({kept}); the source must "
        "be an attack run of --runtime=inprocess (runtime "
        f"{config.runtime.value} here) that finished its attack round")


def run_server_row(source: str, spec: str) -> dict:
  """The source's experiment under aggregator `spec`, its attack replayed:
  the row's summary (read if the row already finished)."""
  config, attack = attack_config.load_run(source)
  config = dataclasses.replace(config, aggregator=spec)
  # Scored: round 0, the attack round and the last (the table's columns).
  attack = dataclasses.replace(attack, pretrained_from=None,
                               attacker_update_from=source,
                               score_every=config.rounds)
  attack_config.check_pretrained_from(config, attack)
  output_dir = row_dir(source, spec)
  summary_path = os.path.join(output_dir, "summary.json")
  wanted = {"training": attack_config.to_jsonable(config),
            "attack": attack_config.to_jsonable(attack)}
  existing = os.path.join(output_dir, attack_config.EXPERIMENT_JSON)
  if os.path.isfile(existing):
    with open(existing) as f:
      if json.load(f) != json.loads(json.dumps(wanted)):
        raise ValueError(f"{output_dir} holds a run of other settings (an "
                         "older source run?); delete it to run this row")
    if os.path.isfile(summary_path):
      logging.info("server row %s: finished run %s read", spec, output_dir)
      with open(summary_path) as f:
        return json.load(f)
  logging.info("server row %s: running %s", spec, output_dir)
  return backdoor_attack.run_attack_experiment(config, attack, output_dir)


def run_local_rows(run_dir: str, table: TableConfig, checkpoint: str) -> dict:
  """The local defense at every delta on `run_dir`'s `checkpoint` model, in
  the run's case: defend.py's summary (its finished units are reused)."""
  _, attack = attack_config.load_run(run_dir)
  return defend.run_defend(run_dir, table.defend_config(
      checkpoint, attack.backdoor.case.value))


def server_row(spec: str, summary: dict, run_dir: str) -> dict:
  """A table row from an Experiment 1 summary: the attack round's and the
  last round's metrics."""
  rows = summary["metrics"]
  attacked = next(r for r in rows if r.get("attack"))
  last, first = rows[-1], rows[0]
  return {
      "defense": spec, "kind": "server", "run_dir": run_dir,
      "server_sees_updates": not aggregators.parse_aggregator(
          spec).keeps_secure_aggregation,
      "after_attack": {m: attacked[m] for m in BACKDOOR},
      "later": {m: last[m] for m in BACKDOOR},
      "rounds_later": last["round"] - attacked["round"],
      "meta_test": last[META_TEST],
      "unattacked": {m: first[m] for m in BACKDOOR}}


def local_rows(delta_labels: Sequence[str], attacked: dict, later: dict,
               run_dir: str, rounds_later: int) -> list[dict]:
  """Table rows of the local defense from defend.py's summaries of the
  attacked and the last model (one case: the run's)."""
  rows = []
  for label in delta_labels:
    def metrics(summary, key="mean_over_clients"):
      (values,) = [v for k, v in summary[key].items()
                   if k.split("/")[0] == label]
      return values
    rows.append({
        "defense": f"local matching, {label.replace('delta', 'delta ')}",
        "kind": "local", "run_dir": os.path.join(
            run_dir, defend.SUBDIR, "table_attacked"),
        "server_sees_updates": False,
        "after_attack": {m: metrics(attacked)[m] for m in BACKDOOR},
        "later": {m: metrics(later)[m] for m in BACKDOOR},
        "rounds_later": rounds_later,
        "meta_test": metrics(later)[META_TEST],
        "unattacked": {m: metrics(attacked, "unattacked_mean_over_clients")[m]
                       for m in BACKDOOR}})
  return rows


def run_table(source: str, table: TableConfig) -> list[dict]:
  """Every row of the table (module docstring), running what is missing."""
  check_source(source)
  rows = []
  for spec in table.server_defenses:
    summary = run_server_row(source, spec)
    rows.append(server_row(spec, summary, row_dir(source, spec)))
  if table.local_deltas:
    reference = row_dir(source, table.server_defenses[0])
    attacked = run_local_rows(reference, table, "attacked")
    later = run_local_rows(reference, table, "final")
    labels = [auto_delta.delta_label(d) for d in table.local_deltas]
    rows += local_rows(labels, attacked, later, reference,
                       rows[0]["rounds_later"])
  return rows
