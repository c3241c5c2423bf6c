"""Figures laid out like the main paper's, written as PNG next to the CSVs.

- `plot_rounds`: Figs. 4-7, accuracy per federated round after the attack,
  one panel per case (a), (b), (c).
- `plot_finetune`: Figs. 8-12, accuracy per fine-tuning iteration, a column
  per benign client and a row per case.

Colours follow the paper: main-task purple, attack training blue, attack
validation green, meta-testing black.
"""

from __future__ import annotations

import csv
from typing import Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from matplotlib import ticker  # pylint: disable=g-import-not-at-top

SERIES = (("main_task_accuracy", "main task", "tab:purple"),
          ("backdoor_train_accuracy", "attack training", "tab:blue"),
          ("backdoor_val_accuracy", "attack validation", "tab:green"),
          ("meta_test_accuracy", "meta-testing", "black"))
CASE_TITLES = {"a": "(a) No backdoor classes in benign training",
               "b": "(b) Backdoor classes used in benign pre-training",
               "c": "(c) Backdoor classes used also in benign fine-tuning"}


def read_csv(path: str) -> list[dict[str, str]]:
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _column(rows, name):
  xs, ys = [], []
  for row in rows:
    value = row.get(name, "")
    if value not in ("", None):
      xs.append(float(row["_x"]))
      ys.append(100.0 * float(value))
  return xs, ys


def _draw(ax, rows, prefix="", reference_rows=None, reference_label=""):
  """The four series of `rows`; the backdoor series of `reference_rows`
  (another model on the same episodes: the level to come back to) dashed."""
  for name, label, colour in SERIES:
    xs, ys = _column(rows, prefix + name)
    if xs:
      ax.plot(xs, ys, color=colour, label=label, marker="." if len(xs) < 30
              else None)
    if reference_rows is not None and name.startswith("backdoor_"):
      xs, ys = _column(reference_rows, prefix + name)
      if xs:
        ax.plot(xs, ys, color=colour, ls="--", lw=1,
                label=f"{label}, {reference_label}")
  ax.set_ylim(-2, 102)
  # Ticks at 1, 2 or 5 x 10^k (0, 100, 200 or 0, 50, 100, ...), where the
  # curves have their points (every 10 or 50 iterations), not at 60, 120.
  ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True,
                                                steps=[1, 2, 5, 10]))
  ax.grid(alpha=0.3)


def plot_rounds(csv_by_case: Mapping[str, str], path: str) -> None:
  """Figs. 4-7: accuracy (%) per round, one panel per case."""
  cases = sorted(csv_by_case)
  fig, axes = plt.subplots(1, len(cases), figsize=(5 * len(cases), 3.6),
                           squeeze=False)
  for ax, case in zip(axes[0], cases):
    rows = [{**r, "_x": r["round"]} for r in read_csv(csv_by_case[case])]
    _draw(ax, rows)
    ax.set_title(CASE_TITLES.get(case, case), fontsize=9)
    ax.set_xlabel("round (0 = pre-trained, attack in round 1)")
    ax.set_ylabel("accuracy (%)")
  axes[0][0].legend(fontsize=8, loc="best")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_finetune(csv_by_case: Mapping[str, str], clients: Sequence[int],
                  path: str, *, reference: Optional[Mapping[str, str]] = None,
                  reference_label: str = "") -> None:
  """Figs. 8-12: accuracy (%) per fine-tuning iteration; columns are clients
  (CSV columns `client<i>/<metric>`), rows are cases. `reference`: CSVs of
  the same layout (e.g. the unattacked model's), drawn dashed."""
  cases = sorted(csv_by_case)
  fig, axes = plt.subplots(len(cases), len(clients),
                           figsize=(4 * len(clients), 3.2 * len(cases)),
                           squeeze=False)
  for i, case in enumerate(cases):
    rows = [{**r, "_x": r["step"]} for r in read_csv(csv_by_case[case])]
    reference_rows = None
    if reference and case in reference:
      reference_rows = [{**r, "_x": r["step"]}
                        for r in read_csv(reference[case])]
    for j, client in enumerate(clients):
      ax = axes[i][j]
      _draw(ax, rows, prefix=f"client{client}/",
            reference_rows=reference_rows, reference_label=reference_label)
      ax.set_title(f"{CASE_TITLES.get(case, case)[:3]} user {client + 1}",
                   fontsize=9)
      ax.set_xlabel("fine-tuning iteration")
      if j == 0:
        ax.set_ylabel(f"{CASE_TITLES.get(case, case)[:3]} accuracy (%)")
  axes[0][0].legend(fontsize=7, loc="best")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
