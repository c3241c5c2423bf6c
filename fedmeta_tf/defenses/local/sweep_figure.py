"""The delta trade-off of Experiments 3(a)/3(b) in one figure.

The paper shows it across Figs. 14, 17, 20 and 21 (Omniglot, delta = 0.3,
0.6, 0.4, 0.2): more Glorot noise (smaller delta) removes more of the
backdoor and costs accuracy. Here: one panel per case, the four metrics
after the last fine-tuning iteration (mean over clients) against delta, in
the colours of `reporting/figures.py`.
"""

from __future__ import annotations

import collections
from typing import Mapping

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


def _by_case(final) -> dict:
  """{case: {delta: {metric: mean over clients}}}."""
  by_case = collections.defaultdict(dict)
  for key, values in mean_over_clients(final).items():
    delta_label, case = key.split("/")
    by_case[case][float(delta_label.removeprefix("delta"))] = values
  return by_case


def plot_delta_sweep(final: Mapping[str, Mapping[str, float]], path: str, *,
                     title: str = "",
                     baseline: Mapping[str, Mapping[str, float]] = None,
                     unattacked: Mapping[str, Mapping[str, float]] = None
                     ) -> None:
  """Final metrics against delta; `baseline` ({case: {metric: value}}, the
  undefended fine-tuned model on the same episodes) is drawn dashed;
  `unattacked` (as `final`, the same defense from the unattacked model) is
  drawn dotted: the level a removed backdoor comes back to."""
  by_case = _by_case(final)
  reference = _by_case(unattacked) if unattacked else {}
  cases = sorted(by_case)
  fig, axes = plt.subplots(1, len(cases), figsize=(4.6 * len(cases), 3.6),
                           squeeze=False)
  for ax, case in zip(axes[0], cases):
    deltas = sorted(by_case[case])
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
