"""Federated Reptile training: rounds, periodic meta-test, results on disk.

Algorithm 1 of the main paper (Section 2.1) as a schedule over the one round
loop (`rounds.py`), with every runtime. It writes, under the run directory:
`metrics.csv` (one row per round) and TensorBoard events
(`reporting/release.py`), `timing.csv`, `summary.json` with the final
figures, `final_weights.npz` and `saved_model/` (the global model,
`models/export.py`).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from fedmeta_tf import enums
from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.data import protocol as protocol_lib
from fedmeta_tf.data import registry
from fedmeta_tf.evaluation import episodes_eval
from fedmeta_tf.evaluation import meta_test as meta_test_lib
from fedmeta_tf.experiments import rounds
from fedmeta_tf.experiments import runners
from fedmeta_tf.meta import client_work as client_work_lib
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import server_tf
from fedmeta_tf.models import conv4
from fedmeta_tf.reporting import release
from fedmeta_tf import parallel


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
  # The split's sizes (main paper, Sections 3.2-3.3); None: the dataset's
  # paper protocol, `registry.PROTOCOLS` (also for configs saved without it).
  protocol: Optional[registry.Protocol] = None

  def __post_init__(self):
    if self.protocol is None:
      object.__setattr__(self, "protocol", registry.protocol_for(self.dataset))
    # "tff" becomes Runtime.TFF here: the runtime is compared by identity.
    object.__setattr__(self, "runtime",
                       enums.parse_enum(Runtime, self.runtime, "runtime"))
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
    aggregators.parse_aggregator(self.aggregator,
                                 secure_sum_bound=self.secure_sum_bound,
                                 max_update_norm=self.max_update_norm)
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
  pool = registry.load_dataset(config.dataset, config.data_dir,
                               seed=config.seed, protocol=config.protocol)
  split = protocol_lib.split_by_protocol(  # CelebA x6 (Section 3.2).
      pool, config.protocol, dataset=config.dataset,
      num_clients=config.num_clients, seed=config.seed)
  check_split_fits(split, config)
  return split


def make_model_fn(config: TrainingConfig, image_shape):
  def model_fn():
    return conv4.build_conv4(image_shape, config.reptile.ways,
                             variant=config.model_variant,
                             filters=config.filters, seed=config.seed)
  return model_fn


def make_runner(config: TrainingConfig, client_work, model_fn, image_shape,
                *, output_dir: Optional[str] = None,
                client_chunk: int = runners.DEFAULT_CLIENT_CHUNK):
  """The round runner `config` asks for: its runtime and its aggregator
  (parsed from the flag text into one object here, for every experiment);
  `output_dir` and `client_chunk` as in `runners.make_runner`."""
  return runners.make_runner(
      config.runtime, model_fn=model_fn, client_work=client_work,
      inner_lr=config.reptile.inner_lr,
      aggregator=aggregators.parse_aggregator(
          config.aggregator, secure_sum_bound=config.secure_sum_bound,
          max_update_norm=config.max_update_norm),
      image_shape=image_shape, output_dir=output_dir,
      client_chunk=client_chunk)


class MetaTester:
  """Meta-test accuracy of given weights on the split's meta-test classes."""

  def __init__(self, model_fn, config: TrainingConfig, pool: np.ndarray):
    self._episodes = config.evaluation.episodes

    def make_replica():  # one per parallel stream (fedmeta_tf/parallel.py)
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
    seed = tf.constant(episodes_eval.evaluation_seed(
        self._seed, episodes_eval.META_TEST), tf.int64)
    weights = [tf.constant(v) for v in weights]
    parts = episodes_eval.map_episodes(
        self._replicas,
        lambda replica, chunk: replica[1](weights, self._pool, seed, *chunk),
        self._episodes, "meta-test")
    return float(np.mean(np.concatenate([np.asarray(p) for p in parts])))


def run_training(config: TrainingConfig, output_dir: str, *,
                 client_chunk: int = runners.DEFAULT_CLIENT_CHUNK) -> dict:
  """Runs `config.rounds` rounds and writes results under `output_dir`.

  Resumable (`rounds.RoundLoop`): the server state is checkpointed after
  every round; if `output_dir` holds checkpoints, training continues after
  the latest one, and rows of later rounds are rewritten, never duplicated.
  Timings go to `timing.csv`, apart from `metrics.csv`, so a resumed run's
  metrics equal an uninterrupted run's. `client_chunk`: the in-process
  driver's outer iterations per chunk of client work (`runners`).
  """
  os.makedirs(output_dir, exist_ok=True)
  split = load_split(config)
  logging.info("data: %s", split.describe())
  image_shape = split.meta_train.image_shape
  client_pools = [split.client_pool(c) for c in range(config.num_clients)]
  client_work = client_work_lib.BenignReptile(
      config=config.reptile, run_seed=config.seed, client_pools=client_pools)
  model_fn = make_model_fn(config, image_shape)
  runner = make_runner(config, client_work, model_fn, image_shape,
                       output_dir=output_dir, client_chunk=client_chunk)
  meta_tester = MetaTester(model_fn, config, split.meta_test.images)
  metrics = release.MetricsRelease(output_dir)
  loop = rounds.RoundLoop(runner.initialize(), output_dir=output_dir,
                          extra={"meta_test_accuracy": 0.0})
  state = loop.run(benign_rounds(config, runner, meta_tester, metrics, loop))
  final_weights = runner.weights(state)
  rounds.keep_model(os.path.join(output_dir, "final_weights.npz"),
                    final_weights, model=meta_tester.model,
                    saved_model_dir=os.path.join(output_dir, "saved_model"))
  summary = {"final_meta_test_accuracy": loop.extra["meta_test_accuracy"],
             "rounds": config.rounds,
             "wall_seconds": loop.seconds,
             "meta_test_episodes": config.evaluation.episodes}
  release.write_json_atomically(os.path.join(output_dir, "summary.json"),
                                summary)
  return summary


def benign_rounds(config: TrainingConfig, runner, meta_tester: MetaTester,
                  metrics: release.MetricsRelease,
                  loop: rounds.RoundLoop) -> list[rounds.Round]:
  """The schedule of a benign run: round 0 scores the initial model (not
  timed), rounds 1..R are Algorithm 1's with the sampled clients that
  report (a round with fewer than M_min is skipped: the model stays), each
  meta-tested every `eval_every` rounds and at the end. The last accuracy
  is kept in `loop.extra`, saved with the checkpoints."""

  def score(state, round_num) -> float:
    accuracy = meta_tester(runner.weights(state), round_num)
    loop.extra["meta_test_accuracy"] = accuracy
    return accuracy

  def initial(state):
    return state, {"meta_test_accuracy": score(state, 0)}

  def train(round_num):
    def step(state):
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
        row["meta_test_accuracy"] = score(state, round_num)
      return state, row
    return step

  return [rounds.Round(version=0, key=0, step=initial, metrics=metrics,
                       timed=False)] + [
      rounds.Round(version=r, key=r, step=train(r), metrics=metrics)
      for r in range(1, config.rounds + 1)]
