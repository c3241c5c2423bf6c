"""Writing the pruning defense's results: the stage table (as the paper's
Tables I-VI) as CSV and Markdown, the curves as CSV, and the figure of
accuracy / attack success vs channels pruned and vs Delta (Figs 4-5)."""

from __future__ import annotations

import os
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from fedmeta_tf.defenses.pruning import defense
from fedmeta_tf.defenses.pruning import paper_tables
from fedmeta_tf.reporting import release

STAGE_COLUMNS = ("stage", "test_accuracy", "attack_success", "val_accuracy",
                 "num", "delta")


def _fmt(value) -> str:
  if value is None:
    return "-"
  if isinstance(value, float):
    return f"{100 * value:.1f}" if value <= 1 else f"{value:g}"
  return str(value)


def _table_line(cells) -> str:
  return "| " + " | ".join(cells) + " |"


def stages_markdown(stages) -> str:
  """The stage table; accuracies in percent (num: channels pruned or weights
  zeroed or fine-tuning rounds; delta: the chosen Delta)."""
  lines = [_table_line(STAGE_COLUMNS), "|" + "---|" * len(STAGE_COLUMNS)]
  for row in stages:
    cells = []
    for c in STAGE_COLUMNS:
      v = row.get(c)
      cells.append(f"{v:g}" if c == "delta" and v is not None else _fmt(v))
    lines.append(_table_line(cells))
  return "\n".join(lines) + "\n"


def write_results(result: defense.DefenseResult, output_dir: str,
                  title: str = "") -> dict:
  """Writes stages.csv/.md, pruning_curve.csv, delta_curve*.csv and
  pruning.png under `output_dir`; returns the paths."""
  os.makedirs(output_dir, exist_ok=True)
  stages = release.MetricsRelease(output_dir, name="stages",
                                  key_fieldname="step", tensorboard=False)
  for i, row in enumerate(result.stages):
    stages.release({k: ("" if v is None else v) for k, v in row.items()},
                   key=i)
  md_path = os.path.join(output_dir, "stages.md")
  with open(md_path, "w") as f:
    f.write(stages_markdown(result.stages))
  for name, rows, key in (("pruning_curve", result.pruning, "pruned"),
                          ("delta_curve", result.deltas, "delta"),
                          ("delta_curve_after_fine_tune",
                           result.deltas_after_fine_tune, "delta")):
    if not rows:
      continue
    curve = release.MetricsRelease(output_dir, name=name, key_fieldname="step",
                                   tensorboard=False)
    for i, row in enumerate(rows):
      curve.release(row, key=i)
  fig_path = os.path.join(output_dir, "pruning.png")
  plot(result, fig_path, title)
  return {"stages_md": md_path, "figure": fig_path}


def plot(result: defense.DefenseResult, path: str, title: str = "") -> None:
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  ax = axes[0]
  x = [r["pruned"] for r in result.pruning]
  ax.plot(x, [r["test_accuracy"] for r in result.pruning], "-", label="test acc")
  ax.plot(x, [r["attack_success"] for r in result.pruning], "--",
          label="attack success")
  ax.axvline(len(result.pruned), color="grey", lw=0.8, ls=":",
             label=f"stop ({len(result.pruned)} pruned)")
  ax.set_xlabel("channels pruned (last conv layer)")
  ax.set_ylabel("rate")
  ax.set_ylim(-0.02, 1.02)
  ax.set_title("neuron pruning (cf. Fig. 4)")
  ax.legend(loc="lower left", fontsize=8)
  ax = axes[1]
  for rows, marker, tag in ((result.deltas, ".", "after pruning"),
                            (result.deltas_after_fine_tune, "o",
                             "after fine-tuning")):
    if not rows:
      continue
    d = [r["delta"] for r in rows]
    ax.plot(d, [r["test_accuracy"] for r in rows], linestyle="-",
            marker=marker, label=f"test acc, {tag}", ms=4)
    ax.plot(d, [r["attack_success"] for r in rows], linestyle="--",
            marker=marker, label=f"attack success, {tag}", ms=4)
  ax.invert_xaxis()
  ax.set_xlabel("Delta (weights outside mu +- Delta*sigma zeroed)")
  ax.set_ylim(-0.02, 1.02)
  ax.set_title("adjusting extreme weights (cf. Fig. 5)")
  ax.legend(loc="lower left", fontsize=8)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _cell(test, attack, num=None) -> str:
  text = f"{test:.1f} / {attack:.1f}"
  return text + (f" ({num:g})" if num is not None else "")


def _ours(stages: dict, stage: str):
  """(test %, attack %, num) of one of our stages, or None."""
  row = stages.get(stage)
  if row is None:
    return None
  return (100 * row["test_accuracy"], 100 * row["attack_success"],
          row.get("num") if stage != "training" else None)


def _mean_cell(values) -> str:
  if not values:
    return "-"
  nums = [v[2] for v in values if v[2] is not None]
  return _cell(float(np.mean([v[0] for v in values])),
               float(np.mean([v[1] for v in values])),
               round(float(np.mean(nums)), 1) if nums else None)


def _figures(rows, stage_names, paper):
  """Per row and stage: (ours, the paper's) as (test %, attack %, num)."""
  kind = paper.key_kind if paper else "pair"
  out = []
  for member, stages in rows:
    by_stage = {s["stage"]: s for s in stages}
    paper_row = (paper.rows.get(member.key(kind)) or {}) if paper else {}
    figures = {}
    for stage in stage_names:
      theirs = paper_row.get(stage)
      figures[stage] = (_ours(by_stage, stage),
                        (theirs.test, theirs.attack, theirs.num)
                        if theirs else None)
    out.append((member, figures))
  return out


def _attack_removed_counts(figures, stage_names, paper) -> str:
  """"stage: k of n" rows with attack success <= 10 % after each stage."""
  counts = []
  for stage in stage_names:
    ours = [f[stage][0] for _, f in figures if f[stage][0]]
    if stage == "training" or not ours:
      continue
    text = f"{stage}: {sum(a <= 10 for _, a, _ in ours)} of {len(ours)}"
    theirs = [f[stage][1] for _, f in figures if f[stage][1]]
    if paper and theirs:
      text += (f" (paper, same rows: {sum(a <= 10 for _, a, _ in theirs)} of"
               f" {len(theirs)})")
    counts.append(text)
  return ("\nRows with attack success <= 10 %: " + "; ".join(counts) + ".\n"
          if counts else "")


def sweep_table(rows, paper: Optional[paper_tables.PaperTable] = None
                ) -> tuple[str, list[dict]]:
  """The paper's table layout with our figures beside the paper's.

  Args:
    rows: (member, stages) per run of a sweep (`sweeps.Member`, the stage
      rows `defense.run_defense` wrote).
    paper: the paper's table, or None (our figures only).

  Returns:
    (Markdown, CSV rows). Cells are "test accuracy / attack success (num)"
    in percent; num is channels pruned or weights zeroed. The mean row
    averages the rows shown; the paper's mean over all its rows follows.
  """
  stage_names = (paper.stages if paper else
                 tuple(dict.fromkeys(s["stage"] for _, st in rows for s in st)))
  figures = _figures(rows, stage_names, paper)
  header = ["run"]
  for stage in stage_names:
    header += [f"{stage}: ours", f"{stage}: paper"] if paper else [stage]
  lines = [_table_line(header), "|" + "---|" * len(header)]
  csv_rows = []
  for member, by_stage in figures:
    cells = [member.label() or "run"]
    for stage in stage_names:
      ours, theirs = by_stage[stage]
      cells.append(_cell(*ours) if ours else "-")
      if paper:
        cells.append(_cell(*theirs) if theirs else "-")
      csv_rows.append({"run": member.name, "stage": stage, **{
          f"{prefix}{name}": ("" if v is None or v[i] is None else v[i])
          for prefix, v in (("", ours), ("paper_", theirs))
          for i, name in enumerate(("test_accuracy", "attack_success",
                                    "num"))}})
    lines.append(_table_line(cells))
  cells = [f"**mean of {len(rows)}**"]
  for stage in stage_names:
    cells.append(_mean_cell([f[stage][0] for _, f in figures if f[stage][0]]))
    if paper:
      cells.append(_mean_cell([f[stage][1] for _, f in figures
                               if f[stage][1]]))
  lines.append(_table_line(cells))
  if paper:
    cells = [f"paper, all {len(paper.rows)} rows"]
    for stage in stage_names:
      m = (paper.mean(stage) if any(stage in r for r in paper.rows.values())
           else None)
      cells += ["", _cell(m.test, m.attack, m.num) if m else "-"]
    lines.append(_table_line(cells))
  markdown = "\n".join(lines) + "\n"
  return (markdown + _attack_removed_counts(figures, stage_names, paper),
          csv_rows)


def write_sweep_table(rows, output_dir: str, title: str,
                      paper: Optional[paper_tables.PaperTable] = None
                      ) -> str:
  """Writes table.md and table.csv under `output_dir`; returns table.md."""
  markdown, csv_rows = sweep_table(rows, paper)
  os.makedirs(output_dir, exist_ok=True)
  heading = f"# {title}\n\n"
  if paper:
    heading += (f"Beside: the paper's {paper.title}. Cells: test accuracy / "
                "attack success, percent (num: channels pruned or weights "
                "zeroed).\n\n")
  path = os.path.join(output_dir, "table.md")
  release.write_text_atomically(path, heading + markdown)
  table = release.MetricsRelease(output_dir, name="table", key_fieldname="row",
                                 tensorboard=False)
  for i, row in enumerate(csv_rows):
    table.release(row, key=i)
  return path
