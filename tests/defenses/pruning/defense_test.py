"""The defense's stopping rules and stages on a model whose 'accuracy' is a
known function of its weights."""

import numpy as np
import pytest

from fedmeta_tf.defenses.pruning import defense
from fedmeta_tf.defenses.pruning import surgery
from fedmeta_tf.defenses.pruning import voting


def test_stop_point():
  assert defense.stop_point([0.9, 0.9, 0.895, 0.88, 0.9], 0.9, 0.01) == 2
  assert defense.stop_point([0.9, 0.95], 0.9, 0.01) == 1
  assert defense.stop_point([0.5], 0.9, 0.01) == 0


def test_stop_point_consecutive_is_the_papers_rule():
  # Section V-B: stop when accuracy drops over 1% between two testing
  # points, so a slow decline goes on where the reference rule stops.
  values = [0.9, 0.895, 0.888, 0.881, 0.86, 0.85]
  assert defense.stop_point(values, 0.9, 0.01, "reference") == 1
  assert defense.stop_point(values, 0.9, 0.01, "consecutive") == 3
  assert defense.stop_point([0.9, 0.89, 0.88], 0.9, 0.01,
                            "consecutive") == 2
  # The first point is compared with the reference.
  assert defense.stop_point([0.85, 0.85], 0.9, 0.01, "consecutive") == 0
  with pytest.raises(ValueError, match="rule"):
    defense.stop_point(values, 0.9, 0.01, "median")


def test_run_defense_prunes_dormant_backdoor_channel_and_extreme_weight():
  # 4 channels of a [1, 1, 1, 4] kernel. Channel 3 is the "backdoor neuron":
  # dormant on every client's data; the attack also needs the extreme
  # weight in channel 0. Accuracy needs channels 0-2 and falls when
  # channel 2 (the next most dormant) goes.
  kernel = np.array([[[[8.0, 1.0, 1.2, 0.9]]]], np.float32)
  kernel = np.concatenate([kernel] * 10, axis=2)  # [1, 1, 10, 4]
  kernel[:, :, 1:, 0] = 1.0
  target = surgery.LayerTarget(kernel=0, channel_vectors=(),
                               activation_layer="x")

  def evaluate(w):
    k = w[0]
    alive = np.abs(k).sum(axis=(0, 1, 2)) > 0
    acc = 0.9 if alive[2] else 0.5
    attack = 1.0 if (alive[3] or k[0, 0, 0, 0] > 5) else 0.0
    return {"val_accuracy": acc, "test_accuracy": acc,
            "attack_success": attack}

  activations = [np.array([5., 3., 2., 0.1]), np.array([4., 3., 2.5, 0.])]
  config = defense.PruningConfig(vote=voting.Vote.RANKING,
                                 deltas=(5.0, 3.0, 2.0))
  result = defense.run_defense([kernel], target=target,
                               client_activations=activations,
                               evaluate=evaluate, config=config)
  stages = {s["stage"]: s for s in result.stages}
  np.testing.assert_array_equal(result.pruned, [3])
  assert stages["pruning"]["num"] == 1
  assert stages["pruning"]["attack_success"] == 1.0
  assert stages["extreme_weights"]["attack_success"] == 0.0
  assert stages["extreme_weights"]["test_accuracy"] == 0.9
  assert [r["pruned"] for r in result.pruning] == [0, 1, 2, 3, 4]


def test_extreme_weight_stage_has_its_own_tolerance():
  # Pruning may cost up to 3 points; Delta must stop where accuracy begins
  # to fall (1 point below the pruned model), not spend the pruning budget.
  kernel = np.linspace(-1.0, 1.0, 40, dtype=np.float32).reshape([1, 1, 10, 4])
  target = surgery.LayerTarget(kernel=0, channel_vectors=(),
                               activation_layer="x")

  def evaluate(w):
    k = w[0]
    alive = np.abs(k).sum(axis=(0, 1, 2)) > 0
    if not alive[2]:
      return {"val_accuracy": 0.5, "test_accuracy": 0.5, "attack_success": 0.}
    # Pruning channel 3 costs 2 points, each zeroed weight 0.4 points.
    zeroed = int(np.sum((k == 0) & alive[None, None, None, :]))
    acc = 0.9 - (0.0 if alive[3] else 0.02) - 0.004 * zeroed
    return {"val_accuracy": acc, "test_accuracy": acc, "attack_success": 0.}

  activations = [np.array([5., 4., 3., 0.1])]
  # Outside mu +- Delta sigma of channels 0-2: 2, 6, 10 weights.
  deltas = (1.6, 1.4, 1.2)
  shared = defense.PruningConfig(accuracy_drop=0.03, deltas=deltas)
  own = defense.PruningConfig(accuracy_drop=0.03, delta_accuracy_drop=0.01,
                              deltas=deltas)
  assert shared.delta_drop == 0.03 and own.delta_drop == 0.01
  zeroed = {}
  for name, config in (("shared", shared), ("own", own)):
    result = defense.run_defense([kernel], target=target,
                                 client_activations=activations,
                                 evaluate=evaluate, config=config)
    stages = {s["stage"]: s for s in result.stages}
    np.testing.assert_array_equal(result.pruned, [3])  # within 3 points
    zeroed[name] = stages["extreme_weights"]["num"]
  assert zeroed == {"shared": 6, "own": 2}
  with pytest.raises(ValueError, match="delta_accuracy_drop"):
    defense.PruningConfig(delta_accuracy_drop=-0.1)


def test_consecutive_rule_applies_the_delta_after_a_slow_decline():
  """Section V-C: Delta decreases until the accuracy drops over 1 % between
  two points. A decline of 0.8 points per step is accepted step after step
  even when it ends more than 1 point below the pruned model (the Delta is
  applied, not refused); a first Delta that itself drops more is refused."""
  kernel = np.linspace(-1.0, 1.0, 40, dtype=np.float32).reshape([1, 1, 10, 4])
  target = surgery.LayerTarget(kernel=0, channel_vectors=(),
                               activation_layer="x")

  def accuracy(first_step_cost):
    def evaluate(w):
      zeroed = int(np.sum(w[0] == 0))
      cost = 0.002 * zeroed + (first_step_cost if zeroed else 0.0)
      return {"val_accuracy": 0.9 - cost, "test_accuracy": 0.9 - cost,
              "attack_success": 0.0}
    return evaluate

  # Outside mu +- Delta sigma: 4, 8, 12 weights (0.8, 1.6, 2.4 points).
  config = defense.PruningConfig(prune_neurons=False, stop_rule="consecutive",
                                 deltas=(1.6, 1.4, 1.2), accuracy_drop=0.01)
  stages = defense.run_defense([kernel], target=target,
                               client_activations=[np.ones(4)],
                               evaluate=accuracy(0.0), config=config).stages
  assert [s["stage"] for s in stages] == ["training", "extreme_weights"]
  assert stages[1]["delta"] == 1.2 and stages[1]["num"] == 12
  stages = defense.run_defense([kernel], target=target,
                               client_activations=[np.ones(4)],
                               evaluate=accuracy(0.05), config=config).stages
  assert stages[1]["delta"] is None and stages[1]["num"] == 0


def test_config_validation():
  with pytest.raises(ValueError, match="accuracy_drop"):
    defense.PruningConfig(accuracy_drop=1.5)
  with pytest.raises(ValueError, match="stop_metric"):
    defense.PruningConfig(stop_metric="loss")
  with pytest.raises(ValueError, match="stop_rule"):
    defense.PruningConfig(stop_rule="loss")
