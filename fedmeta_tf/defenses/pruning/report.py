"""Writing the pruning defense's results: the stage table (as the paper's
Tables I-VI) as CSV and Markdown, the curves as CSV, and the figure of
accuracy / attack success vs channels pruned and vs Delta (Figs 4-5)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from fedmeta_tf.defenses.pruning import defense
from fedmeta_tf.reporting import release

STAGE_COLUMNS = ("stage", "test_accuracy", "attack_success", "val_accuracy",
                 "num", "delta")


def _fmt(value) -> str:
  if value is None:
    return "-"
  if isinstance(value, float):
    return f"{100 * value:.1f}" if value <= 1 else f"{value:g}"
  return str(value)


def stages_markdown(stages) -> str:
  """The stage table; accuracies in percent (num: channels pruned or weights
  zeroed or fine-tuning rounds; delta: the chosen Delta)."""
  lines = ["| " + " | ".join(STAGE_COLUMNS) + " |",
           "|" + "---|" * len(STAGE_COLUMNS)]
  for row in stages:
    cells = []
    for c in STAGE_COLUMNS:
      v = row.get(c)
      cells.append(f"{v:g}" if c == "delta" and v is not None else _fmt(v))
    lines.append("| " + " | ".join(cells) + " |")
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
  for rows, style, tag in ((result.deltas, "", "after pruning"),
                           (result.deltas_after_fine_tune, "o",
                            "after fine-tuning")):
    if not rows:
      continue
    d = [r["delta"] for r in rows]
    ax.plot(d, [r["test_accuracy"] for r in rows], "-" + style,
            label=f"test acc, {tag}", ms=3)
    ax.plot(d, [r["attack_success"] for r in rows], "--" + style,
            label=f"attack success, {tag}", ms=3)
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
