"""The federated pruning defense, stage by stage (pruning paper, Section IV).

    1. clients report rankings / majority masks of the last conv layer's
       channels (`voting.py`); the server merges them into a pruning order;
    2. the server prunes channels in that order until the accuracy drops
       by more than `accuracy_drop`. Section V-B: "we determine the pruning
       stop point when the test accuracy drops over 1% between two testing
       points" (`stop_rule="consecutive"`: a drop between successive points
       of the curve); `stop_rule="reference"` is the stricter variant that
       stops before the accuracy falls `accuracy_drop` below the unpruned
       model's. The stop signal is either the server's own validation set
       or the mean of the clients' reported accuracies;
    3. adjusting extreme weights (IV-C): zero the layer's kernel weights
       outside mu +- Delta*sigma, starting from a large Delta and decreasing
       it until the accuracy drops (same rule, the reference being step 2's
       model; Fig. 5: "selecting the Delta value that test accuracy begins
       to decrease"). Its tolerance `delta_accuracy_drop` is separate from
       the pruning stage's: Section IV lets pruning go on to "the maximum
       pruning rate with an acceptable test accuracy" (Table V loses ~5
       points in that stage), while Delta stops where accuracy *begins* to
       decrease;
    4. optional federated fine-tuning rounds of the pruned model (IV-D),
       then step 3 again.

Everything model-specific comes in as callables over weight lists, so the
same procedure runs on the supervised CNN and on the meta-learning Conv4:
`evaluate(weights) -> {"val_accuracy", "test_accuracy", "attack_success",
...}` and `fine_tune(weights, mask_fn) -> weights`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np

from fedmeta_tf.defenses.pruning import surgery
from fedmeta_tf.defenses.pruning import voting

Weights = list
Evaluate = Callable[[Weights], dict]
STOP_RULES = ("reference", "consecutive")


@dataclasses.dataclass(frozen=True)
class PruningConfig:
  """Hyperparameters of the defense.

  Attributes:
    vote: ranking or majority vote.
    pruning_rate: p of the majority vote's client masks.
    accuracy_drop: largest tolerated validation-accuracy loss of the
      pruning stage.
    delta_accuracy_drop: the same for the extreme-weight stage (relative to
      the model it starts from); None: `accuracy_drop`.
    prune_step: channels added per evaluation of the pruning curve.
    deltas: Delta values tried, in the order tried (decreasing).
    stop_metric: the metric the stops watch ("val_accuracy": the server's
      validation set; "client_accuracy": clients' reported accuracy).
    stop_rule: "consecutive" (the paper's: stop before the first drop of
      more than `accuracy_drop` between two successive testing points) or
      "reference" (stop before the metric falls more than `accuracy_drop`
      below the stage's starting model).
    fine_tune_rounds: federated fine-tuning rounds (0: none).
    prune_neurons: False skips steps 1-2 (Table III: adjusting extreme
      weights alone).
  """

  vote: voting.Vote = voting.Vote.RANKING
  pruning_rate: float = 0.5
  accuracy_drop: float = 0.01
  delta_accuracy_drop: Optional[float] = None
  prune_step: int = 1
  deltas: tuple = tuple(np.round(np.arange(5.0, 0.49, -0.25), 2))
  stop_metric: str = "val_accuracy"
  stop_rule: str = "reference"
  fine_tune_rounds: int = 0
  prune_neurons: bool = True

  def __post_init__(self):
    if not 0 <= self.pruning_rate <= 1:
      raise ValueError(f"pruning_rate must be in [0, 1], got {self.pruning_rate}")
    if not 0 <= self.accuracy_drop < 1:
      raise ValueError(f"accuracy_drop must be in [0, 1), got {self.accuracy_drop}")
    if (self.delta_accuracy_drop is not None
        and not 0 <= self.delta_accuracy_drop <= 1):
      raise ValueError(f"delta_accuracy_drop must be in [0, 1] (1: apply the "
                       f"last Delta whatever the accuracy), got "
                       f"{self.delta_accuracy_drop}")
    if self.prune_step < 1:
      raise ValueError(f"prune_step must be >= 1, got {self.prune_step}")
    if not self.deltas or min(self.deltas) <= 0:
      raise ValueError(f"deltas must be positive, got {self.deltas}")
    if self.stop_metric not in ("val_accuracy", "client_accuracy"):
      raise ValueError("stop_metric must be val_accuracy or client_accuracy, "
                       f"got {self.stop_metric}")
    if self.stop_rule not in STOP_RULES:
      raise ValueError(f"stop_rule must be one of {STOP_RULES}, got "
                       f"{self.stop_rule!r}")
    if self.fine_tune_rounds < 0:
      raise ValueError(f"fine_tune_rounds must be >= 0, got "
                       f"{self.fine_tune_rounds}")

  @property
  def delta_drop(self) -> float:
    """The extreme-weight stage's tolerated drop."""
    return (self.accuracy_drop if self.delta_accuracy_drop is None
            else self.delta_accuracy_drop)


def pruning_order(client_activations: Sequence[np.ndarray],
                  config: PruningConfig) -> tuple[np.ndarray, np.ndarray]:
  """Steps 1: (channels, most dormant first; the merged score)."""
  reports = np.stack([voting.client_report(a, config.vote, config.pruning_rate)
                      for a in client_activations])
  return voting.merge_reports(reports)


def pruning_curve(weights: Weights, target: surgery.LayerTarget,
                  order: np.ndarray, evaluate: Evaluate, *, step: int = 1
                  ) -> list[dict]:
  """Metrics after pruning the first k channels of `order`, k = 0, step, ...,
  C (Fig. 4)."""
  counts = sorted(set(range(0, len(order) + 1, step)) | {len(order)})
  rows = []
  for k in counts:
    pruned = surgery.apply_channel_mask(weights, target, order[:k])
    rows.append({"pruned": k, **evaluate(pruned)})
  return rows


def stop_point(values: Sequence[float], reference: float,
               accuracy_drop: float, rule: str = "reference") -> int:
  """Index of the last value before the stop.

  rule="reference": the first value below reference - drop stops.
  rule="consecutive" (Section V-B): the first value more than `drop` below
  the value before it stops (the value before values[0] is `reference`).
  Index 0 is returned when values[0] itself stops (the caller checks it).
  """
  if rule not in STOP_RULES:
    raise ValueError(f"rule must be one of {STOP_RULES}, got {rule!r}")
  previous = reference
  for i, v in enumerate(values):
    if v < previous - accuracy_drop - 1e-12:
      return max(i - 1, 0)
    if rule == "consecutive":
      previous = v
  return len(values) - 1


def delta_curve(weights: Weights, target: surgery.LayerTarget,
                pruned: Sequence[int], evaluate: Evaluate,
                deltas: Sequence[float]) -> list[dict]:
  """Metrics after zeroing weights outside mu +- Delta*sigma (Fig. 5)."""
  rows = []
  for delta in deltas:
    adjusted, zeroed = surgery.zero_extreme_weights(weights, target, delta,
                                                    pruned)
    rows.append({"delta": float(delta), "zeroed": zeroed, **evaluate(adjusted)})
  return rows


def adjust_extreme_weights(weights: Weights, target: surgery.LayerTarget,
                           pruned: Sequence[int], evaluate: Evaluate,
                           config: PruningConfig, reference: dict
                           ) -> tuple[Weights, dict, list[dict]]:
  """Step 3: the smallest Delta (tried in decreasing order) before the stop
  metric drops more than `config.delta_drop` below `reference`'s.

  Returns (weights, the chosen row, the whole Delta curve)."""
  curve = delta_curve(weights, target, pruned, evaluate, config.deltas)
  chosen = stop_point([r[config.stop_metric] for r in curve],
                      reference[config.stop_metric], config.delta_drop,
                      config.stop_rule)
  row = curve[chosen]
  # Index 0 is also what stop_point returns when the first Delta itself
  # stops: then nothing is zeroed. (Past index 0 the stop rule has accepted
  # the row; under "consecutive" it may lie more than the drop below the
  # reference after a slow decline.)
  if chosen == 0 and row[config.stop_metric] < (
      reference[config.stop_metric] - config.delta_drop - 1e-12):
    return list(weights), {**reference, "delta": None, "zeroed": 0}, curve
  adjusted, _ = surgery.zero_extreme_weights(weights, target, row["delta"],
                                             pruned)
  return adjusted, row, curve


@dataclasses.dataclass
class DefenseResult:
  """Each stage's metrics (the rows of Tables I-VI) and the curves."""

  stages: list  # dicts: stage, test_accuracy, attack_success, num, ...
  pruning: list  # Fig. 4 rows
  deltas: list  # Fig. 5 rows (after pruning)
  deltas_after_fine_tune: list
  order: np.ndarray
  pruned: np.ndarray
  weights: Weights


def run_defense(weights: Weights, *, target: surgery.LayerTarget,
                client_activations: Sequence[np.ndarray], evaluate: Evaluate,
                config: PruningConfig,
                fine_tune: Optional[Callable[[Weights, Callable], Weights]]
                = None) -> DefenseResult:
  """Runs steps 1-4 on the trained global model `weights`."""
  stages = []

  def stage(name, w, **extra):
    row = {"stage": name, **evaluate(w), **extra}
    stages.append(row)
    return row

  trained = stage("training", weights)
  order, _ = pruning_order(client_activations, config)
  if config.prune_neurons:
    curve = pruning_curve(weights, target, order, evaluate,
                          step=config.prune_step)
    chosen = stop_point([r[config.stop_metric] for r in curve],
                        trained[config.stop_metric], config.accuracy_drop,
                        config.stop_rule)
    pruned = order[:curve[chosen]["pruned"]]
    w = surgery.apply_channel_mask(weights, target, pruned)
    after_pruning = stage("pruning", w, num=len(pruned))
  else:  # Table III: extreme weights on the trained model alone
    curve, pruned, w, after_pruning = [], order[:0], list(weights), trained
  w_adj, row, deltas = adjust_extreme_weights(w, target, pruned, evaluate,
                                              config, after_pruning)
  stage("extreme_weights", w_adj, num=row.get("zeroed", 0),
        delta=row.get("delta"))
  final = w_adj
  deltas_ft = []
  if config.fine_tune_rounds and fine_tune is not None:
    mask = lambda ws: surgery.apply_channel_mask(ws, target, pruned)
    tuned = mask(fine_tune(w, mask))
    tuned_row = stage("fine_tuning", tuned, num=config.fine_tune_rounds)
    final, row, deltas_ft = adjust_extreme_weights(tuned, target, pruned,
                                                   evaluate, config, tuned_row)
    stage("fine_tuning+extreme_weights", final, num=row.get("zeroed", 0),
          delta=row.get("delta"))
  return DefenseResult(stages=stages, pruning=curve, deltas=deltas,
                       deltas_after_fine_tune=deltas_ft, order=order,
                       pruned=np.asarray(pruned), weights=final)
