r"""Soak test: many short rounds with random client faults and dropouts.

    .venv/bin/python -m benchmarks.soak [--rounds=100] [--runtime=inprocess]

Runs a tiny federated Reptile job in which, every round, each client may
send a NaN / Inf / huge update (probability --fault_rate) and may drop out
(--dropout_rate, policy --dropout_policy). Then checks and prints:
  - metrics.csv has exactly one row per round (0..rounds), keys in order;
  - every faulty update was excluded (excluded_updates == faults injected
    among the round's reporting clients) and the global weights are finite;
  - the latest checkpoint loads and equals the final weights.
Exits 1 if any check fails.
"""

import csv
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.data import class_pool
from fedmeta_tf.data import episodes
from fedmeta_tf.experiments import checkpoints
from fedmeta_tf.meta import client_work
from fedmeta_tf.meta import faults
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import server_tf
from fedmeta_tf.models import conv4
from fedmeta_tf.reporting import release
from fedmeta_tf.runtime import inprocess

_ROUNDS = flags.DEFINE_integer("rounds", 100, "Rounds to run.")
_FAULT_RATE = flags.DEFINE_float("fault_rate", 0.2,
                                 "Probability a client's update is faulty.")
_DROPOUT_RATE = flags.DEFINE_float("dropout_rate", 0.2, "Client dropout rate.")
_DROPOUT_POLICY = flags.DEFINE_enum("dropout_policy", "wait", ["wait", "skip"],
                                    "Policy for too few reports.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed.")

NUM_CLIENTS, PER_ROUND, MIN_UPDATES = 6, 4, 3


def _make_runner(benign: client_work.ClientWork) -> inprocess.InProcessRunner:
  """The soak job's runner: Conv4 (4 filters), secure mean aggregation."""

  def model_fn():
    return conv4.build_conv4((28, 28, 1), 3, filters=4, seed=0)

  return inprocess.InProcessRunner(
      model_fn=model_fn, client_work=benign, inner_lr=0.001,
      aggregator=aggregators.parse_aggregator("secure_mean"))


def _inject_faults(runner: inprocess.InProcessRunner,
                   benign: client_work.ClientWork,
                   rng: np.random.Generator) -> dict:
  """Draws the round's faulty clients and makes the runner's clients fault."""
  round_faults = {c: faults.Fault(int(rng.integers(1, 4)))
                  for c in range(NUM_CLIENTS)
                  if rng.random() < _FAULT_RATE.value}
  work = faults.FaultInjectingClientWork(benign, round_faults)
  runner._client_work = work  # pylint: disable=protected-access
  runner._client_update = client_work.make_client_update_fn(  # pylint: disable=protected-access
      work, runner._model, runner._optimizer)  # pylint: disable=protected-access
  return round_faults


def _check_outputs(metrics: release.MetricsRelease,
                   checkpointer: checkpoints.RoundCheckpointer,
                   runner: inprocess.InProcessRunner, state,
                   failures: list[str]) -> tuple[list[int], int]:
  """Appends to `failures` what is wrong with metrics.csv and the latest
  checkpoint; returns the rounds of metrics.csv and the latest round."""
  with open(metrics.csv_path) as f:
    keys = [int(r["round"]) for r in csv.DictReader(f)]
  if keys != list(range(_ROUNDS.value + 1)):
    failures.append(f"metrics.csv rounds are {keys[:5]}... not 0..{_ROUNDS.value}")
  loaded, _, latest = checkpointer.load_latest(state, {})
  if latest != _ROUNDS.value or not all(
      np.array_equal(a, b) for a, b in zip(runner.weights(loaded),
                                           runner.weights(state))):
    failures.append("latest checkpoint does not hold the final state")
  return keys, latest


def main(argv):
  del argv
  rng = np.random.default_rng(_SEED.value)
  pools = [rng.integers(0, 256, (8, 6, 28, 28, 1), dtype=np.uint8)
           for _ in range(NUM_CLIENTS)]
  config = reptile_tf.ReptileConfig(ways=3, shots=2, iterations=1,
                                    meta_batch=1, inner_steps=1, inner_batch=4)
  benign = client_work.BenignReptile(config=config, run_seed=_SEED.value,
                                     client_pools=pools)
  out = tempfile.mkdtemp(prefix="fedmeta_soak_")
  metrics = release.MetricsRelease(out, tensorboard=False)
  checkpointer = checkpoints.RoundCheckpointer(os.path.join(out, "ckpt"))
  start = time.time()
  failures = []
  faulty_total = excluded_total = skipped = 0
  state = None
  for round_num in range(0, _ROUNDS.value + 1):
    if round_num == 0:
      runner = _make_runner(benign)
      state = runner.initialize()
      metrics.release({"excluded_updates": 0}, key=0)
      checkpointer.save(0, state, {})
      continue
    round_faults = _inject_faults(runner, benign, rng)
    clients = server_tf.select_clients_with_dropouts(
        seed=_SEED.value, round_num=round_num, num_clients=NUM_CLIENTS,
        clients_per_round=PER_ROUND, min_updates=MIN_UPDATES,
        dropout_rate=_DROPOUT_RATE.value, policy=_DROPOUT_POLICY.value)
    if not clients:
      skipped += 1
      metrics.release({"excluded_updates": 0, "skipped": 1}, key=round_num)
      checkpointer.save(round_num, state, {})
      continue
    state, m = runner.next(state, clients)
    expected = sum(c in round_faults for c in clients)
    faulty_total += expected
    excluded_total += m["excluded_updates"]
    if m["excluded_updates"] != expected:
      failures.append(f"round {round_num}: excluded {m['excluded_updates']}, "
                      f"injected {expected}")
    if not all(np.isfinite(w).all() for w in runner.weights(state)):
      failures.append(f"round {round_num}: non-finite global weights")
    metrics.release({"excluded_updates": m["excluded_updates"], "skipped": 0},
                    key=round_num)
    checkpointer.save(round_num, state, {})

  keys, latest = _check_outputs(metrics, checkpointer, runner, state,
                                failures)
  print(f"soak: {_ROUNDS.value} rounds in {time.time() - start:.0f} s, "
        f"{faulty_total} faulty updates injected among reporting clients, "
        f"{excluded_total} excluded, {skipped} rounds skipped; metrics rows "
        f"{len(keys)}; checkpoint round {latest}")
  print("soak: OK" if not failures else "soak: FAILED\n  " +
        "\n  ".join(failures))
  sys.exit(1 if failures else 0)


if __name__ == "__main__":
  app.run(main)
