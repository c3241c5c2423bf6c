"""Our numbers beside the papers' figures, row by row, for every kind of run.

`rows(run, paper_tables)` gives (what, ours, paper, in_summary) rows for a
run (`reproduction_report.Run`); `experiment(run, paper_tables)` names the
experiment. The papers' figures are those quoted in the flagfile headers:
`PAPER` (main paper Sections 3.4 and 4.2; pruning paper abstract) and the
pruning paper's Tables I-VI (`defenses/pruning/paper_tables.py`, passed in
by `binaries.report`: this layer imports nothing from the package).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any, Mapping, Optional

# By dataset: quantity -> the paper's figure (text, as published): main paper
# Section 3.4 (Exp. 1(a): Fig. 4a; Exp. 2: Fig. 8a-b) and 4.2 (Exp. 3(a):
# Fig. 14a); the pruning paper's abstract (Fashion-MNIST, Table V). The
# paper's "round 2" is the model after the attack round: our round 1.
PAPER = {
    "omniglot": {
        "meta_test_before_attack": "> 99%",
        "backdoor_train_after_attack": "78% (the paper's round 2)",
        "backdoor_val_after_attack": "77% (the paper's round 2)",
        "backdoor_train_last": "~50% (after 50 benign rounds)",
        "backdoor_val_last": "~50% (after 50 benign rounds)",
        "meta_test_last": "> 98%",
        "finetune_backdoor": "> 80% after 500 iterations (cases a, b)",
        "defense_backdoor": {0.3: "~20% (delta = 0.3)"},
        "defense_meta_test": {0.3: "> 96% (delta = 0.3)"},
    },
    "miniimagenet": {
        "meta_test_before_attack": "~60%",
        "backdoor_train_after_attack": "74% (the paper's round 2)",
        "backdoor_val_after_attack": "55% (the paper's round 2)",
        "backdoor_train_last": "68% (after 100 rounds)",
        "backdoor_val_last": "48% (after 100 rounds)",
    },
    "celeba": {
        "meta_test_before_attack": "~85%",
        "backdoor_train_after_attack": "98% (the paper's round 2)",
        "backdoor_val_after_attack": "90% (the paper's round 2)",
        "backdoor_train_last": "73% (M = 4, after 100 rounds)",
        "backdoor_val_last": "67% (M = 4, after 100 rounds)",
        "defense_backdoor": {None: "100% / 80% -> ~40%"},
    },
    "fashion_mnist": {
        "attack_success": "99.7% -> 1.9% after pruning (6.4% with "
                          "fine-tuning)",
    },
}
_SCALAR = (int, float)
_MAX_ROWS = 60
_METRICS = (("backdoor_train_accuracy", "backdoor accuracy, attack training"),
            ("backdoor_val_accuracy", "backdoor accuracy, attack validation"),
            ("main_task_accuracy", "main-task accuracy"),
            ("meta_test_accuracy", "meta-test accuracy"))


@dataclasses.dataclass(frozen=True)
class Row:
  what: str
  ours: str
  paper: str = ""
  in_summary: bool = True


def percent(value: Any) -> str:
  try:
    v = float(value)
  except (TypeError, ValueError):
    return str(value)
  return f"{100 * v:.1f}%" if 0 <= v <= 1 else f"{v:g}"


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
  """Scalar leaves of nested dicts whose names mention accuracy/success."""
  out = []
  if isinstance(value, dict):
    for k, v in value.items():
      out += flatten(v, f"{prefix}/{k}" if prefix else str(k))
  elif isinstance(value, _SCALAR) and not isinstance(value, bool):
    if re.search(r"accuracy|success|loss", prefix):
      out.append((prefix, value))
  return out


def _experiment1(run, paper: Mapping) -> list[Row]:
  rows = [r for r in run.summary.get("metrics", []) if isinstance(r, dict)]
  if not rows and any("backdoor_train_accuracy" in r
                      for r in run.metrics_rows):
    rows = run.metrics_rows  # A run still in progress.
  by_round = {int(r.get("round", i)): r for i, r in enumerate(rows)}
  if not by_round:
    return []
  attacks = sorted(k for k, r in by_round.items() if r.get("attack"))
  last, out = max(by_round), []

  def add(what, round_num, key, paper_key, in_summary=True):
    if round_num in by_round and key in by_round[round_num]:
      out.append(Row(f"{what} (round {round_num})",
                     percent(by_round[round_num][key]),
                     paper.get(paper_key, ""), in_summary))
  add("meta-test accuracy before the attack", 0, "meta_test_accuracy",
      "meta_test_before_attack")
  add("backdoor accuracy, attack training, unattacked", 0,
      "backdoor_train_accuracy", "", False)
  if attacks:
    for key, what in _METRICS[:2]:
      add(f"{what}, after the attack", attacks[0], key,
          key.replace("_accuracy", "_after_attack"))
  if last > (attacks[0] if attacks else 0):
    benign = f"{last - attacks[0]} benign rounds after it" if attacks else ""
    for key, what in _METRICS[:2]:
      add(f"{what}, {benign}".rstrip(", "), last, key,
          key.replace("_accuracy", "_last"))
    add("meta-test accuracy", last, "meta_test_accuracy", "meta_test_last")
  return out


def _user(client_key: str) -> str:
  """"client1" -> "2" (client 0 is the papers' user 1, the attacker)."""
  number = client_key.removeprefix("client")
  return str(int(number) + 1) if number.isdigit() else client_key


def _by_group(final: Mapping) -> dict:
  """{"a": {"2": {metric: v}}} from {"a/client1": {...}} (Experiment 2),
  or {"delta0.3/a": ...} from {"delta0.3/a/client1": ...}."""
  groups = {}
  for key, values in final.items():
    group, _, client = key.rpartition("/")
    groups.setdefault(group, {})[_user(client)] = values
  return groups


def _experiment2(run, paper: Mapping) -> list[Row]:
  steps = run.summary.get("steps", "?")
  out = []
  for case, users in _by_group(run.summary.get("final", {})).items():
    for key, what in _METRICS:
      values = [u.get(key) for u in users.values()]
      if any(v is None for v in values):
        continue
      hint = (paper.get("finetune_backdoor", "") if "backdoor" in key and
              case in ("a", "b") else "")
      out.append(Row(f"case ({case}), {what} after {steps} iterations, "
                     f"users {' / '.join(users)}",
                     " / ".join(percent(v) for v in values), hint))
  return out


def _delta_hint(paper: Mapping, key: str, delta: Optional[float]) -> str:
  by_delta = paper.get(key, {})
  for d, text in by_delta.items():
    if d is None or (delta is not None and math.isclose(d, delta)):
      return text
  return ""


def _experiment3(run, paper: Mapping) -> list[Row]:
  steps, out = run.summary.get("steps", "?"), []
  for prefix, label in (("", ""), ("unattacked_", "unattacked model, ")):
    means = run.summary.get(f"{prefix}mean_over_clients") or {}
    for group, m in means.items():
      delta_label, _, case = group.partition("/")
      delta_text = delta_label.removeprefix("delta")  # a number or "auto"
      try:
        delta = float(delta_text)
        delta_text = f"{delta:g}"
      except ValueError:
        delta = None
      where = (f"{label}delta {delta_text}, case ({case}), mean over users "
               f"after {steps} iterations")
      pairs = (("backdoor train / val", _METRICS[0][0], _METRICS[1][0],
                "defense_backdoor"),
               ("main task / meta-test", _METRICS[2][0], _METRICS[3][0],
                "defense_meta_test"))
      for what, a, b, paper_key in pairs:
        if a in m and b in m:
          out.append(Row(f"{where}: {what}",
                         f"{percent(m[a])} / {percent(m[b])}",
                         "" if prefix else _delta_hint(paper, paper_key,
                                                       delta),
                         not prefix))
  return out


def _cell(cell) -> str:
  return f"{cell.test:.1f}% / {cell.attack:.1f}%"


def _stage_rows(stages, label: str, paper_row: Mapping,
                final_only: bool) -> list[Row]:
  out = []
  for i, s in enumerate(stages):
    if "test_accuracy" not in s or "attack_success" not in s:
      continue
    theirs = paper_row.get(s.get("stage"))
    last = i == len(stages) - 1
    out.append(Row(f"{label}after {s.get('stage', '?')}: test accuracy / "
                   "attack success",
                   f"{percent(s['test_accuracy'])} / "
                   f"{percent(s['attack_success'])}",
                   _cell(theirs) if theirs else "",
                   last or not final_only))
  return out


def _member_key(member: Mapping, kind: str):
  if kind == "pixels":
    return member.get("key_pixels")
  return (member.get("source_label"), member.get("target_label"))


def _sweep_rows(run, table) -> list[Row]:
  """A sweep's members (training, or the pruning defense of each), with the
  paper's row of `table` (a `paper_tables.PaperTable`) where it has one."""
  out = []
  for member in run.members:
    summary = run.member_summary(member["name"])
    paper_row = (table.rows.get(_member_key(member, table.key_kind), {})
                 if table else {})
    label = f"{member['name'].replace('_', ' ')}: "
    if run.kind == "prune":
      out += _stage_rows(summary.get("stages", []), label, paper_row, True)
    elif "test_accuracy" in summary and "attack_success" in summary:
      theirs = paper_row.get("training")
      out.append(Row(f"{label}after training: test accuracy / attack "
                     "success", f"{percent(summary['test_accuracy'])} / "
                     f"{percent(summary['attack_success'])}",
                     _cell(theirs) if theirs else ""))
  return out


def _generic(run, paper: Mapping) -> list[Row]:
  s, out = run.summary, []
  if "final_meta_test_accuracy" in s:
    out.append(Row("final meta-test accuracy",
                   percent(s["final_meta_test_accuracy"])))
  for key in ("test_accuracy", "attack_success", "val_accuracy"):
    if key in s:
      out.append(Row(key.replace("_", " "), percent(s[key]),
                     paper.get(key, "")))
  if isinstance(s.get("stages"), list):
    out += _stage_rows(s["stages"], "", {}, True)
  if not out:  # Unknown summary: every accuracy-like number, or the CSV.
    source = s or _last_values(run.metrics_rows)
    out = [Row(k, percent(v)) for k, v in flatten(source)]
  return out


def _last_values(rows) -> dict:
  out = {}
  for r in rows:  # Latest non-empty value of every column.
    out.update(r)
  return out


def rows(run, paper_tables: Optional[Mapping] = None) -> list[Row]:
  """The rows of `run` (what, ours, paper), from whatever it has."""
  paper = PAPER.get(run.dataset, {})
  table = (paper_tables or {}).get(run.paper_table) if run.paper_table \
      else None
  if run.members:
    out = _sweep_rows(run, table)
  elif run.kind == "finetune" or (run.kind == "unknown" and isinstance(
      run.summary.get("final"), dict) and "defense" not in run.summary):
    out = _experiment2(run, paper)
  elif "mean_over_clients" in run.summary:
    out = _experiment3(run, paper)
  else:
    out = _experiment1(run, paper) or _generic(run, paper)
  return out[:_MAX_ROWS]


def experiment(run, paper_tables: Optional[Mapping] = None) -> str:
  """The experiment a run reproduces, in the papers' terms."""
  flags, dataset = run.flags, run.dataset
  table = (paper_tables or {}).get(run.paper_table) if run.paper_table \
      else None
  short = table.title.split(":")[0] if table else ""
  if run.kind == "train_fedmeta" or "backdoor_train_accuracy" in str(
      run.summary.get("metrics", ""))[:2000]:
    attack = flags.get("attack") not in (None, "", "none")
    case = flags.get("case") or run.summary.get("case") or "?"
    return (f"Exp. 1({case}), {dataset}" if attack else
            f"benign meta-training, {dataset}")
  if run.kind == "finetune":
    return f"Exp. 2, {dataset}"
  if run.kind == "defend" or "defense" in run.summary:
    defense = run.summary.get("defense") or flags.get("defense") or ""
    if run.summary.get("local_meta_iterations"):
      return f"Exp. 3(d), {dataset}"
    name = {"matching": "Exp. 3(a)/(b)", "supervised": "Exp. 3(c)",
            "protonet": "appendix A (ProtoNet)"}.get(defense, "Exp. 3")
    return f"{name}, {dataset}"
  if run.kind == "prune":
    return f"pruning paper{', ' + short if short else ''}: the defense"
  if run.kind == "train_supervised":
    return f"pruning paper{', ' + short if short else ''}: training"
  return os.path.basename(os.path.normpath(run.path))
