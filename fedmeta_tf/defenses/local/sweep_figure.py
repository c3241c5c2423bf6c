"""The delta trade-off of Experiments 3(a)/3(b) in one figure.

The paper shows it across Figs. 14, 17, 20 and 21 (Omniglot, delta = 0.3,
0.6, 0.4, 0.2): more Glorot noise (smaller delta) removes more of the
backdoor and costs accuracy. Here: one panel per case, the four metrics
after the last fine-tuning iteration (mean over clients) against delta, in
the colours of `reporting/figures.py`. `--deltas=auto` (`auto_delta.py`:
a delta per layer, our rule) has no single delta: its metrics are stars at
its mean kernel delta over clients (of the attacked model;
`auto_delta.mean_delta`), apart from the numeric deltas' lines; without
that mean they are left out.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Mapping, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from fedmeta_tf.reporting import figures


def mean_over_clients(final: Mapping[str, Mapping[str, float]]) -> dict:
  """{"delta<d>/<case>": {metric: mean}} from {"delta<d>/<case>/client<i>":
  {metric: value}}."""
  groups = collections.defaultdict(list)
  for key, values in final.items():
    groups[key.rsplit("/", 1)[0]].append(values)
  return {k: {m: float(np.mean([v[m] for v in vs])) for m in vs[0]}
          for k, vs in sorted(groups.items())}


def undefended_baseline(finetune_summary: Mapping, *, steps: int,
                        clients) -> dict:
  """{case: {metric: mean over clients}} of an Experiment 2 summary
  (`experiments/finetune.py`) run for the same `steps`; {} otherwise."""
  if finetune_summary.get("steps") != steps:
    return {}
  groups = collections.defaultdict(list)
  for key, values in finetune_summary.get("final", {}).items():
    case, client = key.split("/")
    if int(client.removeprefix("client")) in clients:
      groups[case].append(values)
  return {case: {m: float(np.mean([v[m] for v in vs])) for m in vs[0]}
          for case, vs in groups.items()}


def _by_case(final) -> tuple[dict, dict]:
  """{case: {delta: {metric: mean over clients}}} of the numeric deltas;
  {case: {metric: mean}} of `deltaauto`."""
  by_case, auto = collections.defaultdict(dict), {}
  for key, values in mean_over_clients(final).items():
    delta_label, case = key.split("/")
    try:
      by_case[case][float(delta_label.removeprefix("delta"))] = values
    except ValueError:  # "deltaauto"
      auto[case] = values
  return by_case, auto


def _plot_auto(ax, auto: Mapping, reference: Mapping, *, x: float) -> None:
  """`auto`'s final metrics ({metric: value}) as stars at x; the unattacked
  model's backdoor metrics (`reference`, maybe {}) as hollow stars."""
  for i, (name, label, colour) in enumerate(figures.SERIES):
    ax.plot([x], [100 * auto[name]], color=colour, marker="*", ms=11,
            ls="none", label=None if i else f"auto (mean kernel delta {x:.2f})")
    if reference and name.startswith("backdoor_"):
      ax.plot([x], [100 * reference[name]], color=colour, marker="*", ms=11,
              mfc="none", ls="none")


def plot_delta_sweep(final: Mapping[str, Mapping[str, float]], path: str, *,
                     title: str = "",
                     baseline: Mapping[str, Mapping[str, float]] = None,
                     unattacked: Mapping[str, Mapping[str, float]] = None,
                     auto_at: Optional[float] = None) -> None:
  """Final metrics against delta; `baseline` ({case: {metric: value}}, the
  undefended fine-tuned model on the same episodes) is drawn dashed;
  `unattacked` (as `final`, the same defense from the unattacked model) is
  drawn dotted: the level a removed backdoor comes back to. `deltaauto`
  keys are stars at x = `auto_at` (left out when None)."""
  by_case, auto = _by_case(final)
  reference, reference_auto = _by_case(unattacked) if unattacked else ({}, {})
  cases = sorted(set(by_case) | set(auto))
  fig, axes = plt.subplots(1, len(cases), figsize=(4.6 * len(cases), 3.6),
                           squeeze=False)
  for ax, case in zip(axes[0], cases):
    deltas = sorted(by_case.get(case, {}))
    for name, label, colour in figures.SERIES:
      ax.plot(deltas, [100 * by_case[case][d][name] for d in deltas],
              color=colour, marker="o", label=label)
      if case in reference and name.startswith("backdoor_"):
        ax.plot(deltas, [100 * reference[case][d][name] for d in deltas],
                color=colour, ls=":", marker=".",
                label=f"{label}, unattacked")
      if baseline and case in baseline:
        ax.axhline(100 * baseline[case][name], color=colour, ls="--", lw=1,
                   label=f"{label}, undefended")
    if case in auto and auto_at is not None:
      _plot_auto(ax, auto[case], reference_auto.get(case, {}), x=auto_at)
    ax.set_ylim(-2, 102)
    ax.set_xticks(deltas)
    ax.set_xlabel("delta (weight of the global model; smaller = more noise)")
    ax.set_ylabel("accuracy after fine-tuning (%)")
    ax.set_title(f"{title} {figures.CASE_TITLES.get(case, case)}", fontsize=8)
    ax.grid(alpha=0.3)
  axes[0][0].legend(fontsize=6, ncol=2, loc="center left")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_sweep_file(path: str, final, *, finetune_summary: str, steps: int,
                    clients, title: str, unattacked=None,
                    auto_at: Optional[float] = None) -> None:
  """`plot_delta_sweep` to `path`, with the Experiment 2 summary file
  `finetune_summary` (same episodes; when it exists and ran for `steps`)
  as the undefended reference."""
  baseline = {}
  if os.path.isfile(finetune_summary):
    with open(finetune_summary) as f:
      baseline = undefended_baseline(json.load(f), steps=steps,
                                     clients=clients)
  plot_delta_sweep(final, path, title=title, baseline=baseline,
                   unattacked=unattacked, auto_at=auto_at)
