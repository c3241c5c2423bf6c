"""Supervised FedAvg with backdoor attackers (pruning paper, Section III).

The rounds of the federation `supervised/training.py` builds, as a schedule
over the one round loop (`rounds.py`), on the same round runners as
federated meta-learning (TFF process or in-process driver, any aggregator).

`run_supervised(config, output_dir)` writes, under `output_dir`:

    config.json      the config (`binaries/prune.py` rebuilds the federation)
    metrics.csv      test / validation accuracy and attack success per round,
                     round 0 = the initial model; tensorboard/ the same
    timing.csv       seconds per round
    checkpoints/     the server state per round: a killed run (SIGKILL
                     included) re-run resumes to the same model and metrics
    weights.npz      the global model
    summary.json

`run_rounds` runs FedAvg rounds in memory (the pruning defense's federated
fine-tuning, pruning paper Section IV-D).
"""

from __future__ import annotations

import json
import os
from typing import Callable, Optional

from absl import logging
import tensorflow as tf

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.experiments import rounds as round_loop
from fedmeta_tf.experiments import runners
from fedmeta_tf.reporting import release
from fedmeta_tf.supervised import data as data_lib
from fedmeta_tf.supervised import training


def fedavg_round(federation: training.Federation, runner, round_num: int,
                 model: tf.keras.Model,
                 after_round: Optional[Callable] = None):
  """Round `round_num` as a step of the round loop: the sampled clients'
  updates aggregated, then `after_round(weights) -> weights` (e.g.
  re-applying a pruning mask), then the new global model scored."""
  def step(state):
    state, _ = runner.next(
        state, training.round_clients(federation.config, round_num))
    if after_round is not None:
      state = runner.with_weights(state, after_round(runner.weights(state)))
    model.set_weights(runner.weights(state))
    return state, training.evaluate(model, federation)
  return step


def run_rounds(federation: training.Federation, runner, state, *, rounds: int,
               first_round: int, model: tf.keras.Model, metrics=None,
               after_round=None):
  """Runs FedAvg rounds first_round.. in memory (no checkpoints); `metrics`
  (a `release.MetricsRelease`, optional) gets each round's scores. Returns
  the final state."""
  loop = round_loop.RoundLoop(state, output_dir=None)
  return loop.run(
      round_loop.Round(r, r, fedavg_round(federation, runner, r, model,
                                          after_round), metrics)
      for r in range(first_round, first_round + rounds))


def _check_same_run(config: training.SupervisedConfig, output_dir: str):
  """ValueError when `output_dir` holds checkpoints of a run with another
  config: resuming them would mix two runs."""
  path = os.path.join(output_dir, "config.json")
  if not (os.path.isfile(path) and
          os.path.isdir(os.path.join(output_dir, "checkpoints"))):
    return
  with open(path) as f:
    theirs = json.load(f)
  if theirs != json.loads(json.dumps(config.to_json())):
    differ = sorted(k for k, v in config.to_json().items()
                    if theirs.get(k) != json.loads(json.dumps(v)))
    raise ValueError(f"{output_dir} holds a run with other settings "
                     f"({', '.join(differ)}); delete it or choose another "
                     "--experiment_name")


def make_runner(federation: training.Federation, after_training: bool = False):
  """The round runner of `federation`'s config (runtime, aggregator); with
  `after_training`, for the fine-tuning rounds that follow the training."""
  c = federation.config
  return runners.make_runner(
      c.runtime, model_fn=federation.model_fn,
      client_work=federation.client_work(after_training=after_training),
      inner_lr=c.learning_rate,
      aggregator=aggregators.parse_aggregator(c.aggregator),
      image_shape=federation.data.image_shape)


def run_supervised(config: training.SupervisedConfig, output_dir: str,
                   data: Optional[data_lib.SupervisedData] = None) -> dict:
  """Trains and writes results under `output_dir` (module docstring);
  resumes from the latest checkpoint there (refused when that run had
  another config)."""
  os.makedirs(output_dir, exist_ok=True)
  _check_same_run(config, output_dir)
  with open(os.path.join(output_dir, "config.json"), "w") as f:
    json.dump(config.to_json(), f, indent=2)
  federation = training.build_federation(config, data)
  logging.info("clients' labels %s, attackers %s",
               federation.client_labels.tolist(), federation.attackers)
  runner = make_runner(federation)
  model = federation.model_fn()
  metrics = release.MetricsRelease(output_dir)

  def initial(state):  # round 0: the initial model, scored, not timed
    model.set_weights(runner.weights(state))
    return state, training.evaluate(model, federation)

  loop = round_loop.RoundLoop(runner.initialize(), output_dir=output_dir)
  state = loop.run(
      [round_loop.Round(0, 0, initial, metrics, timed=False)] +
      [round_loop.Round(r, r, fedavg_round(federation, runner, r, model),
                        metrics) for r in range(1, config.rounds + 1)])
  weights = runner.weights(state)
  round_loop.keep_model(os.path.join(output_dir, "weights.npz"), weights)
  model.set_weights(weights)
  summary = {**training.evaluate(model, federation), "rounds": config.rounds,
             "attackers": federation.attackers,
             "client_labels": federation.client_labels.tolist(),
             "wall_seconds": loop.seconds}
  release.write_json_atomically(os.path.join(output_dir, "summary.json"),
                                summary)
  return summary
