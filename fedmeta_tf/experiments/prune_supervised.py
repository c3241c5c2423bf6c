"""The pruning defense on a supervised federated run (pruning paper, V).

Rebuilds the run's federation from its `config.json`, loads its global
model (`weights.npz`), lets every client compute its activation record on
its own data (attackers on theirs, poisoned copies included: the server
cannot tell them apart), and runs `defense.run_defense`, with federated
fine-tuning done by the same round runner as training (all clients, the
attacker included, as in Section IV-D), the pruning mask re-applied after
each round.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np

from fedmeta_tf.defenses.pruning import defense
from fedmeta_tf.defenses.pruning import surgery
from fedmeta_tf.defenses.pruning import voting
from fedmeta_tf.experiments import fedavg
from fedmeta_tf.supervised import client_work as client_work_lib
from fedmeta_tf.supervised import data as data_lib
from fedmeta_tf.supervised import training


def load_run(run_dir: str,
             data: Optional[data_lib.SupervisedData] = None):
  """(federation, global weights) of a `binaries.train_supervised` run;
  `data`: its task when already loaded (a sweep's runs share one)."""
  config_path = os.path.join(run_dir, "config.json")
  weights_path = os.path.join(run_dir, "weights.npz")
  for path in (config_path, weights_path):
    if not os.path.isfile(path):
      raise ValueError(f"{run_dir!r} is not a supervised run directory: "
                       f"{os.path.basename(path)} is missing")
  with open(config_path) as f:
    config = training.SupervisedConfig.from_json(json.load(f))
  return (training.build_federation(config, data),
          training.load_weights(weights_path))


def defend(federation: training.Federation, weights, config:
           defense.PruningConfig) -> defense.DefenseResult:
  model = federation.model_fn()
  target = surgery.supervised_target(model)
  acts = surgery.activation_model(model, target)
  model.set_weights(weights)
  activations = [
      voting.mean_channel_activation(
          acts, client_work_lib.images_to_float(x).numpy())
      for x, _ in federation.client_datasets]

  def evaluate(w):
    model.set_weights(w)
    row = training.evaluate(model, federation)
    if config.stop_metric == "client_accuracy":
      # Clients test the pruned model on their own data and report accuracy.
      row["client_accuracy"] = float(np.mean([
          np.mean(training.predict(model, x) == y)
          for x, y in federation.client_datasets]))
    return row

  def fine_tune(w, mask):
    runner = fedavg.make_runner(federation, after_training=True)
    state = runner.with_weights(runner.initialize(), w)
    tune_model = federation.model_fn()
    state = fedavg.run_rounds(
        federation, runner, state, rounds=config.fine_tune_rounds,
        first_round=federation.config.rounds + 1, model=tune_model,
        after_round=mask)
    return runner.weights(state)

  return defense.run_defense(weights, target=target,
                             client_activations=activations,
                             evaluate=evaluate, config=config,
                             fine_tune=fine_tune)
