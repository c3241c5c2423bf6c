"""The reproduction report: our numbers next to the papers' own figures.

`build_report(run_dirs, output_path)` writes one Markdown page with, for every
run directory: what it is (from flags.json), a table of its numbers (from
summary.json, else the last row of metrics.csv) with the paper's figure where
the paper gives one, any stage tables (`stages.md`) and its figures (every
PNG in the run directory). It reads whatever keys exist: runs of every binary
(train_fedmeta with or without an attack, finetune, defend, prune,
train_supervised) are shown, and missing keys only leave cells empty.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from typing import Any, Optional, Sequence

# By dataset: metric -> the paper's figure (text, as published): main paper
# Section 3.4 (Exp. 1(a), Exp. 2) and 4.2 (Exp. 3(a)); pruning paper
# abstract and Section V-E 4 (Table V).
PAPER = {
    "omniglot": {
        "meta_test_before_attack": "> 99%",
        "backdoor_train_round2": "78%", "backdoor_val_round2": "77%",
        "backdoor_train_last": "~50% (after 50 benign rounds)",
        "backdoor_val_last": "~50% (after 50 benign rounds)",
        "finetune_backdoor": "> 80% after 500 iterations (cases a, b)",
        "defense_backdoor": "~20% (delta = 0.3)",
        "defense_meta_test": "> 96% (delta = 0.3)",
    },
    "miniimagenet": {
        "meta_test_before_attack": "~60%",
        "backdoor_train_round2": "74%", "backdoor_val_round2": "55%",
        "backdoor_train_last": "68% (after 100 rounds)",
        "backdoor_val_last": "48% (after 100 rounds)",
    },
    "celeba": {
        "meta_test_before_attack": "~85%",
        "backdoor_train_round2": "98%", "backdoor_val_round2": "90%",
        "backdoor_train_last": "73% (M = 4, after 100 rounds)",
        "backdoor_val_last": "67% (M = 4, after 100 rounds)",
        "defense_backdoor": "100% / 80% -> ~40%",
    },
    "fashion_mnist": {
        "attack_success": "99.7% -> 1.9% after pruning (6.4% with fine-tuning)",
        "test_accuracy": "-5.5 points after pruning (-1.7 with fine-tuning)",
    },
}
_SCALAR = (int, float)
_MAX_ROWS = 40


@dataclasses.dataclass
class Run:
  """What the report knows about one run directory."""

  path: str
  name: str
  flags: dict
  summary: dict
  metrics_rows: list[dict]
  figures: list[str]
  tables: list[str]

  @property
  def dataset(self) -> str:
    return str(self.flags.get("dataset") or self.flags.get("task") or "?")


def _read_json(path: str) -> dict:
  try:
    with open(path) as f:
      value = json.load(f)
    return value if isinstance(value, dict) else {}
  except (OSError, ValueError):
    return {}


def _csv_rows(path: str) -> list[dict]:
  """metrics.csv rows, empty cells dropped, numbers as floats."""
  try:
    with open(path, newline="") as f:
      rows = list(csv.DictReader(f))
  except OSError:
    return []
  return [{k: _maybe_float(v) for k, v in r.items() if v not in (None, "")}
          for r in rows]


def _last_values(rows: Sequence[dict]) -> dict:
  out = {}
  for r in rows:  # Latest non-empty value of every column.
    out.update(r)
  return out


def load_run(path: str) -> Run:
  """Reads a run directory; raises ValueError when it does not exist."""
  if not os.path.isdir(path):
    raise ValueError(f"run directory {path!r} does not exist")
  figures, tables = [], []
  for root, dirs, files in os.walk(path):
    dirs[:] = sorted(d for d in dirs if d not in ("saved_model", "tensorboard",
                                                  "checkpoints"))
    for f in sorted(files):
      if f.lower().endswith(".png"):
        figures.append(os.path.join(root, f))
      elif f == "stages.md":
        tables.append(os.path.join(root, f))
  return Run(path=path, name=os.path.basename(os.path.normpath(path)),
             flags=_read_json(os.path.join(path, "flags.json")),
             summary=_read_json(os.path.join(path, "summary.json")),
             metrics_rows=_csv_rows(os.path.join(path, "metrics.csv")),
             figures=figures, tables=tables)


def _percent(value: Any) -> str:
  try:
    v = float(value)
  except (TypeError, ValueError):
    return str(value)
  return f"{100 * v:.1f}%" if 0 <= v <= 1 else f"{v:g}"


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
  """Scalar leaves of nested dicts whose names mention accuracy/success."""
  out = []
  if isinstance(value, dict):
    for k, v in value.items():
      out += _flatten(v, f"{prefix}/{k}" if prefix else str(k))
  elif isinstance(value, _SCALAR) and not isinstance(value, bool):
    if re.search(r"accuracy|success|loss", prefix):
      out.append((prefix, value))
  return out


def _experiment1_rows(run: Run, paper: dict) -> list[tuple[str, str, str]]:
  rows = [r for r in run.summary.get("metrics", []) if isinstance(r, dict)]
  if not rows and any("backdoor_train_accuracy" in r
                      for r in run.metrics_rows):
    rows = run.metrics_rows  # A run still in progress.
  if not rows:
    return []
  by_round = {int(r.get("round", i)): r for i, r in enumerate(rows)}
  attack_rounds = [k for k, r in by_round.items() if r.get("attack")]
  after = (attack_rounds[0] + 1) if attack_rounds else 2
  last = max(by_round)
  out = []
  def add(label, round_num, key, paper_key):
    if round_num in by_round and key in by_round[round_num]:
      out.append((f"{label} (round {round_num})",
                  _percent(by_round[round_num][key]), paper.get(paper_key, "")))
  add("meta-test accuracy before the attack", 0, "meta_test_accuracy",
      "meta_test_before_attack")
  add("backdoor accuracy, attack training", after, "backdoor_train_accuracy",
      "backdoor_train_round2")
  add("backdoor accuracy, attack validation", after, "backdoor_val_accuracy",
      "backdoor_val_round2")
  if last > after:
    add("backdoor accuracy, attack training", last, "backdoor_train_accuracy",
        "backdoor_train_last")
    add("backdoor accuracy, attack validation", last,
        "backdoor_val_accuracy", "backdoor_val_last")
  if last > 0:
    add("meta-test accuracy", last, "meta_test_accuracy", "")
  return out


def comparison_rows(run: Run) -> list[tuple[str, str, str]]:
  """(what, ours, paper) rows for `run`, from whatever keys it has."""
  paper = PAPER.get(run.dataset, {})
  s = run.summary
  rows = _experiment1_rows(run, paper)
  if "final_meta_test_accuracy" in s:
    rows.append(("final meta-test accuracy",
                 _percent(s["final_meta_test_accuracy"]),
                 paper.get("meta_test_before_attack", "")))
  if "attack_success" in s or "test_accuracy" in s:
    for key in ("test_accuracy", "attack_success", "val_accuracy"):
      if key in s:
        rows.append((key.replace("_", " "), _percent(s[key]),
                     paper.get(key, "")))
  if isinstance(s.get("final"), dict):
    is_defense = "defense" in s
    for key, value in _flatten(s.get("mean_over_clients") or s["final"]):
      hint = ""
      if "backdoor" in key:
        hint = paper.get("defense_backdoor" if is_defense else
                         "finetune_backdoor", "")
      elif "meta_test" in key and is_defense:
        hint = paper.get("defense_meta_test", "")
      rows.append((key, _percent(value), hint))
  if not rows:  # Unknown summary: every accuracy-like number, or the CSV.
    source = s or _last_values(run.metrics_rows)
    rows = [(k, _percent(v), "") for k, v in _flatten(source)]
  return rows[:_MAX_ROWS]


def _maybe_float(text: str) -> Any:
  try:
    return float(text)
  except (TypeError, ValueError):
    return text


def _describe(run: Run) -> str:
  keys = ("dataset", "attack", "case", "defense", "aggregator", "rounds",
          "num_clients", "shots", "eval_shots", "runtime", "seed")
  parts = [f"{k}={run.flags[k]}" for k in keys if run.flags.get(k) not in
           (None, "", "none")]
  return ", ".join(parts) or "(no flags.json)"


def render(runs: Sequence[Run], output_path: str) -> str:
  """The Markdown page (figure links relative to `output_path`)."""
  base = os.path.dirname(os.path.abspath(output_path))
  lines = ["# Reproduction report", "",
           "Our numbers next to the papers' (main paper Sections "
           "3.4 and 4.2, pruning paper Section 5). Percentages are accuracies "
           "averaged over the run's evaluation episodes.", "",
           "| run | what | ours | paper |", "|---|---|---|---|"]
  for run in runs:
    rows = comparison_rows(run)
    if not rows:
      lines.append(f"| {run.name} | (no summary.json or metrics.csv yet) | | |")
    for what, ours, paper in rows:
      lines.append(f"| {run.name} | {what} | {ours} | {paper} |")
  for run in runs:
    lines += ["", f"## {run.name}", "", f"`{run.path}`: {_describe(run)}", ""]
    if "wall_seconds" in run.summary:
      lines += [f"Wall time: {float(run.summary['wall_seconds']):.0f} s.", ""]
    for table in run.tables:
      with open(table) as f:
        lines += [f"From `{os.path.relpath(table, base)}`:", "",
                  f.read().strip(), ""]
    for figure in run.figures:
      rel = os.path.relpath(figure, base)
      lines += [f"![{run.name}: {os.path.basename(figure)}]({rel})", ""]
  return "\n".join(lines) + "\n"


def build_report(run_dirs: Sequence[str], output_path: str) -> str:
  """Writes the report for `run_dirs` to `output_path`; returns its text."""
  if not run_dirs:
    raise ValueError("no run directories given")
  runs = [load_run(d) for d in run_dirs]
  text = render(runs, output_path)
  os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
  tmp = output_path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, output_path)
  return text


def default_output(run_dirs: Sequence[str]) -> Optional[str]:
  """report.md next to the first run directory."""
  first = os.path.normpath(run_dirs[0])
  return os.path.join(os.path.dirname(first) or ".", "report.md")
