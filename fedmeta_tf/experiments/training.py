"""Federated Reptile training: rounds, periodic meta-test, results on disk.

The experiment loop shared by every runtime (SPEC.md §2). It writes, under
the run directory: `metrics.csv` (one row per round) and TensorBoard events
(`reporting/release.py`), `summary.json` with the final figures, and
`saved_model/` (the global model, `models/export.py`).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
import time
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from fedmeta_tf import enums
from fedmeta_tf.data import protocol as protocol_lib
from fedmeta_tf.data import registry
from fedmeta_tf.evaluation import meta_test as meta_test_lib
from fedmeta_tf.experiments import checkpoints
from fedmeta_tf.meta import client_work as client_work_lib
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import server_tf
from fedmeta_tf.meta import weights as w
from fedmeta_tf.models import conv4
from fedmeta_tf.models import export
from fedmeta_tf.reporting import release
from fedmeta_tf.runtime import parallel


class Runtime(enum.Enum):
  TFF = "tff"
  INPROCESS = "inprocess"


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """Everything a federated Reptile run depends on (written next to results)."""

  dataset: str = "glyphs"
  data_dir: Optional[str] = None
  seed: int = 0
  rounds: int = 10
  num_clients: int = 4
  clients_per_round: int = 3
  min_updates: int = 3
  reptile: reptile_tf.ReptileConfig = reptile_tf.ReptileConfig()
  evaluation: meta_test_lib.EvalConfig = meta_test_lib.EvalConfig()
  eval_every: int = 1
  runtime: Runtime = Runtime.TFF
  aggregator: str = "secure_mean"
  secure_sum_bound: float = 10.0
  max_update_norm: float = 1e6
  dropout_rate: float = 0.0
  dropout_policy: str = "wait"
  model_variant: str = "maxpool"
  filters: int = 64

  def __post_init__(self):
    for name in ("rounds", "num_clients", "clients_per_round", "min_updates",
                 "eval_every", "filters"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    server_tf.select_clients(seed=0, round_num=0, num_clients=self.num_clients,
                             clients_per_round=self.clients_per_round,
                             min_updates=self.min_updates)
    server_tf.select_clients_with_dropouts(
        seed=0, round_num=0, num_clients=self.num_clients,
        clients_per_round=self.clients_per_round,
        min_updates=self.min_updates, dropout_rate=self.dropout_rate,
        policy=_parse_policy(self.dropout_policy))
    registry.parse_dataset_name(self.dataset)
    from fedmeta_tf.tff_process import aggregators  # pylint: disable=g-import-not-at-top
    aggregators.parse_aggregator(self.aggregator)
    if not self.max_update_norm > 0:
      raise ValueError(f"max_update_norm must be positive, got "
                       f"{self.max_update_norm}")
    if not self.secure_sum_bound > 0:
      raise ValueError(f"secure_sum_bound must be positive, got "
                       f"{self.secure_sum_bound}")


def _parse_policy(policy: str) -> server_tf.DropoutPolicy:
  return enums.parse_enum(server_tf.DropoutPolicy, policy, "dropout policy")


def check_split_fits(split: protocol_lib.MetaSplit, config: TrainingConfig):
  """Raises ValueError when episodes cannot be drawn from the split."""
  smallest = min(len(c) for c in split.client_classes)
  if config.reptile.ways > smallest:
    raise ValueError(f"ways (N={config.reptile.ways}) exceeds the {smallest} "
                     "classes of the smallest client")
  if config.reptile.shots > split.meta_train.examples_per_class:
    raise ValueError(f"shots (K={config.reptile.shots}) exceeds the "
                     f"{split.meta_train.examples_per_class} training examples "
                     "per class")
  ev = config.evaluation
  if ev.ways > split.meta_test.num_classes:
    raise ValueError(f"eval ways ({ev.ways}) exceeds the "
                     f"{split.meta_test.num_classes} meta-test classes")
  if ev.shots + ev.queries > split.meta_test.examples_per_class:
    raise ValueError(f"eval shots + queries ({ev.shots}+{ev.queries}) exceeds "
                     f"the {split.meta_test.examples_per_class} examples per "
                     "meta-test class")


@functools.lru_cache(maxsize=1)
def load_split(config: TrainingConfig) -> protocol_lib.MetaSplit:
  """The dataset split by its protocol, checked against `config` (cached:
  binaries load it once to validate, then train on it)."""
  name = registry.parse_dataset_name(config.dataset)
  pool = registry.load_dataset(name, config.data_dir, seed=config.seed)
  proto = registry.PROTOCOLS[name]
  split = protocol_lib.build_meta_split(
      pool, num_clients=config.num_clients,
      num_meta_train=proto.num_meta_train,
      heldout_per_class=proto.heldout_per_class, rotate=proto.rotate,
      seed=config.seed)
  split = registry.augment_split(name, split)  # CelebA x6 (Section 3.2).
  check_split_fits(split, config)
  return split


def make_model_fn(config: TrainingConfig, image_shape):
  def model_fn():
    return conv4.build_conv4(image_shape, config.reptile.ways,
                             variant=config.model_variant,
                             filters=config.filters, seed=config.seed)
  return model_fn


def make_runner(config: TrainingConfig, client_work, model_fn, image_shape):
  """The round runner of `config.runtime` (TFF needs an active context)."""
  if config.runtime is Runtime.TFF:
    from fedmeta_tf.tff_process import runner  # pylint: disable=g-import-not-at-top
    return runner.TffRunner(model_fn=model_fn, client_work=client_work,
                            inner_lr=config.reptile.inner_lr,
                            aggregator=config.aggregator,
                            secure_sum_bound=config.secure_sum_bound,
                            max_update_norm=config.max_update_norm,
                            image_shape=image_shape)
  from fedmeta_tf.runtime import inprocess  # pylint: disable=g-import-not-at-top
  return inprocess.InProcessRunner(model_fn=model_fn, client_work=client_work,
                                   inner_lr=config.reptile.inner_lr,
                                   aggregator=config.aggregator,
                                   secure_sum_bound=config.secure_sum_bound,
                                   max_update_norm=config.max_update_norm)


class MetaTester:
  """Meta-test accuracy of given weights on the split's meta-test classes."""

  def __init__(self, model_fn, config: TrainingConfig, pool: np.ndarray):
    self._episodes = config.evaluation.episodes

    def make_replica():  # one per parallel stream (runtime/parallel.py)
      model, optimizer = reptile_tf.make_learner(
          model_fn, config.evaluation.learning_rate)
      return model, meta_test_lib.make_meta_test_fn(model, optimizer,
                                                    config.evaluation)

    self._replicas = parallel.ReplicaPool(make_replica, parallel.streams())
    self.model = self._replicas.replicas[0][0]
    self._pool = tf.constant(pool)
    self._seed = config.seed

  def __call__(self, weights, round_num: int) -> float:
    # The same episodes every round (seeded by the run seed only), so curves
    # compare models, not episode draws.
    del round_num
    seed = tf.constant([self._seed, 0x7E57], tf.int64)
    weights = [tf.constant(v) for v in weights]
    parts = self._replicas.map_chunks(
        lambda replica, chunk: replica[1](weights, self._pool, seed, *chunk),
        self._episodes)
    return float(np.mean(np.concatenate([np.asarray(p) for p in parts])))


def run_training(config: TrainingConfig, output_dir: str) -> dict:
  """Runs `config.rounds` rounds and writes results under `output_dir`.

  Resumable: the server state is checkpointed after every round
  (`checkpoints.py`); if `output_dir` holds checkpoints, training continues
  after the latest one, and rows of later rounds are rewritten, never
  duplicated. Timings go to `timing.csv`, apart from `metrics.csv`, so a
  resumed run's metrics equal an uninterrupted run's.
  """
  os.makedirs(output_dir, exist_ok=True)
  split = load_split(config)
  logging.info("data: %s", split.describe())
  image_shape = split.meta_train.image_shape
  client_pools = [split.client_pool(c) for c in range(config.num_clients)]
  client_work = client_work_lib.BenignReptile(
      config=config.reptile, run_seed=config.seed, client_pools=client_pools)
  model_fn = make_model_fn(config, image_shape)
  runner = make_runner(config, client_work, model_fn, image_shape)
  meta_tester = MetaTester(model_fn, config, split.meta_test.images)
  metrics = release.MetricsRelease(output_dir)
  timing = release.MetricsRelease(output_dir, name="timing", tensorboard=False)
  checkpointer = checkpoints.RoundCheckpointer(
      os.path.join(output_dir, "checkpoints"))

  state = runner.initialize()
  extra_template = {"meta_test_accuracy": 0.0, "seconds": 0.0}
  saved, extra, start_round = checkpointer.load_latest(state, extra_template)
  if saved is None:
    accuracy = meta_tester(runner.weights(state), 0)
    metrics.release({"meta_test_accuracy": accuracy}, key=0)
    extra = {"meta_test_accuracy": accuracy, "seconds": 0.0}
    checkpointer.save(0, state, extra)
    logging.info("round 0: meta-test accuracy %.4f", accuracy)
  else:
    state = saved
    logging.info("resuming after round %d from %s", start_round,
                 checkpointer.checkpoint_dir)
  accuracy = float(extra["meta_test_accuracy"])
  elapsed = float(extra["seconds"])
  for round_num in range(start_round + 1, config.rounds + 1):
    round_start = time.time()
    clients = server_tf.select_clients_with_dropouts(
        seed=config.seed, round_num=round_num,
        num_clients=config.num_clients,
        clients_per_round=config.clients_per_round,
        min_updates=config.min_updates, dropout_rate=config.dropout_rate,
        policy=config.dropout_policy)
    if clients:
      state, round_metrics = runner.next(state, clients)
      round_metrics["skipped"] = 0
    else:  # too few clients reported: the global model stays as it is
      round_metrics = {"skipped": 1}
      logging.warning("round %d skipped: fewer than %d clients reported",
                      round_num, config.min_updates)
    row = {"clients": " ".join(map(str, clients)), **round_metrics}
    if round_num % config.eval_every == 0 or round_num == config.rounds:
      row["meta_test_accuracy"] = accuracy = meta_tester(
          runner.weights(state), round_num)
    round_seconds = time.time() - round_start
    elapsed += round_seconds
    metrics.release(row, key=round_num)
    timing.release({"round_seconds": round_seconds, "seconds": elapsed},
                   key=round_num)
    checkpointer.save(round_num, state, {"meta_test_accuracy": accuracy,
                                         "seconds": elapsed})
    logging.info("round %d/%d: meta-test accuracy %.4f, %.1f s (clients %s)",
                 round_num, config.rounds, accuracy, round_seconds,
                 row["clients"])

  final_weights = runner.weights(state)
  w.assign(meta_tester.model.trainable_variables, final_weights)
  export.export_saved_model(meta_tester.model,
                            os.path.join(output_dir, "saved_model"))
  release.save_weights_atomically(
      os.path.join(output_dir, "final_weights.npz"), final_weights)
  summary = {"final_meta_test_accuracy": accuracy,
             "rounds": config.rounds,
             "wall_seconds": elapsed,
             "meta_test_episodes": config.evaluation.episodes}
  release.write_json_atomically(os.path.join(output_dir, "summary.json"),
                                summary)
  return summary
