"""The defense table's page and figure (`experiments/defense_table.py`).

One markdown table, a row per defense: where it runs, whether the server
sees individual updates, backdoor accuracy (attack training / validation)
right after the attack and rounds later, meta-test accuracy at the last
round and its difference from the reference row (the first: no defense),
and a plain verdict on the backdoor:

  removed       back at the unattacked level (the same evaluation of the
                pre-trained model; for a local row, the same defense from it)
                within `REMOVED_POINTS`, both right after the attack and later;
  reduced       at least `REDUCED_POINTS` below the reference row (or at
                the unattacked level) at both times (mean of attack training
                and validation);
  reduced later only   so at the last round, not right after the attack;
  not reduced   otherwise.

No TensorFlow here: the page is rendered from the rows' numbers.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

REMOVED_POINTS = 10.0  # the 20-episode backdoor metrics move ~5-10 points
REDUCED_POINTS = 10.0
_BACKDOOR = ("backdoor_train_accuracy", "backdoor_val_accuracy")


def _mean(metrics: dict) -> float:
  return 100 * float(np.mean([metrics[m] for m in _BACKDOOR]))


VERDICTS = ("removed", "reduced", "reduced later only", "not reduced")


def verdict(row: dict, reference: dict) -> str:
  """One of `VERDICTS` (module docstring)."""
  unattacked = _mean(row["unattacked"])

  def removed(t):
    return _mean(row[t]) <= unattacked + REMOVED_POINTS

  def reduced(t):
    return removed(t) or (row is not reference and _mean(
        row[t]) <= _mean(reference[t]) - REDUCED_POINTS)

  if removed("after_attack") and removed("later"):
    return "removed"
  if reduced("after_attack") and reduced("later"):
    return "reduced"
  return "reduced later only" if reduced("later") else "not reduced"


def _pair(metrics: dict) -> str:
  train, val = (100 * metrics[m] for m in _BACKDOOR)
  return f"{train:.1f} / {val:.1f}"


def table_markdown(rows: Sequence[dict], *, link_root: str = "") -> str:
  """The markdown table (first row: the reference)."""
  reference = rows[0]
  later = reference["rounds_later"]
  lines = [
      "| Defense | Runs at | Server sees individual updates | Backdoor "
      "train / val after the attack (%) | Backdoor train / val "
      f"{later} rounds later (%) | Meta-test (%) | vs. none (points) | "
      "Backdoor | Run |",
      "|---|---|---|---|---|---|---|---|---|"]
  for row in rows:
    delta = round(100 * (row["meta_test"] - reference["meta_test"]), 1) + 0.0
    run = os.path.relpath(row["run_dir"], link_root) if link_root else row[
        "run_dir"]
    lines.append(
        f"| {row['defense']} | {row['kind']} | "
        f"{'yes' if row['server_sees_updates'] else 'no'} | "
        f"{_pair(row['after_attack'])} | {_pair(row['later'])} | "
        f"{100 * row['meta_test']:.1f} | "
        f"{'-' if row is reference else f'{delta:+.1f}'} | "
        f"{verdict(row, reference)} | `{run}` |")
  return "\n".join(lines)


def plot(rows: Sequence[dict], path: str) -> None:
  """Backdoor validation accuracy after the attack and later, and meta-test
  accuracy, per defense (bars)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  names = [r["defense"] for r in rows]
  x = np.arange(len(rows))
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, len(rows)), 7),
                                    sharex=True)
  later = rows[0]["rounds_later"]
  for offset, key, label in ((-0.2, "after_attack", "after the attack"),
                             (0.2, "later", f"{later} rounds later")):
    top.bar(x + offset, [100 * r[key]["backdoor_val_accuracy"] for r in rows],
            width=0.4, label=label)
  top.scatter(x, [100 * r["unattacked"]["backdoor_val_accuracy"]
                  for r in rows], color="k", marker="_", s=400,
              label="unattacked level", zorder=3)
  top.set_ylabel("backdoor val. accuracy (%)")
  top.set_ylim(0, 100)
  top.legend(fontsize=8)
  bottom.bar(x, [100 * r["meta_test"] for r in rows], width=0.5,
             color=["tab:gray" if r["server_sees_updates"] else "tab:green"
                    for r in rows])
  low = min(100 * r["meta_test"] for r in rows)
  bottom.set_ylim(max(0, low - 10), 100)
  bottom.set_ylabel(f"meta-test accuracy (%)\nafter {later} rounds")
  bottom.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
  bottom.set_title("green: the server sees only the sum of the updates; "
                   "gray: individual updates", fontsize=8)
  fig.tight_layout()
  tmp = f"{path}.tmp.png"
  fig.savefig(tmp, dpi=100)
  plt.close(fig)
  os.replace(tmp, path)


def findings(rows: Sequence[dict], *, within_points: float = 3.0) -> list[str]:
  """Plain sentences: which defenses keep secure aggregation and meta-test
  accuracy within `within_points` of the reference, which touch the
  backdoor."""
  reference = rows[0]

  def names(keep):
    chosen = [r["defense"] for r in rows[1:] if keep(r)]
    return ", ".join(chosen) if chosen else "none"

  def close(r):
    return abs(100 * (r["meta_test"] - reference["meta_test"])) <= within_points

  return [
      f"- Keep secure aggregation and meta-test accuracy within "
      f"{within_points:g} points of {reference['defense']}: "
      f"{names(lambda r: not r['server_sees_updates'] and close(r))}.",
      *(f"- {label}: {names(lambda r, v=v: verdict(r, reference) == v)}."
        for label, v in (("Remove the backdoor", "removed"),
                         ("Reduce it (not removed)", "reduced"),
                         ("Reduce it in the later rounds only",
                          "reduced later only"),
                         ("Do not reduce it", "not reduced")))]


def page_markdown(rows: Sequence[dict], *, title: str, command: str,
                  machine: str, commit: str, source: str, figure: str) -> str:
  """The whole page: how it was made, the table, the findings, the figure;
  `machine` is `reporting.machine.describe()`'s line."""
  return "\n".join([
      f"# {title}", "",
      "Generated by `python -m binaries.defense_table` "
      "(`fedmeta_tf/experiments/defense_table.py`); do not edit by hand.", "",
      f"- Command: `{command}`",
      f"- {machine[:1].upper()}{machine[1:]}",
      f"- Code: {commit}",
      f"- Source run (pre-trained model and the attacker's update, replayed "
      f"in every row): `{source}`", "",
      table_markdown(rows), "",
      *findings(rows), "",
      "Server rows: the main paper's Experiment 1 evaluation of the global "
      "model (Section 3.4), the defense active from the attack round. Local "
      "rows: the benign clients' defended fine-tuning (Section 4.2, "
      "Experiment 3's evaluation, mean over the benign clients) of the "
      "first row's global model; their unattacked level is the same defense "
      "from the pre-trained model. Verdicts: removed = within "
      f"{REMOVED_POINTS:g} points of the unattacked level at both times; "
      f"reduced = at least {REDUCED_POINTS:g} points below the first row "
      "(or removed) at both times, reduced later only = so at the last "
      "round only (mean of attack training and validation).", "",
      f"![every defense]({figure})", ""])
