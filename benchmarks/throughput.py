r"""Inner-loop throughput and the TFF / in-process round-time ratio.

    .venv/bin/python -m benchmarks.throughput [--steps=500] [--rounds=2]

Prints:
  1. SGD steps per second of the Reptile inner loop (Conv4, 28x28x1, batch
     10, Adam) for both Conv4 variants, in one tf.function (no Python call
     per step), after a warm-up call.
  2. Seconds per federated round on the same work (same clients, same
     seeds) in the TFF runtime (C++ worker, secure-sum mean) and in the
     in-process driver, and their ratio (target: <= 1.10). Compilation and
     the first round are excluded from both.
"""

import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from fedmeta_tf.meta import client_work
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.models import conv4
from fedmeta_tf.runtime import inprocess
from fedmeta_tf.tff_process import contexts
from fedmeta_tf.tff_process import runner

_STEPS = flags.DEFINE_integer("steps", 500, "Inner steps timed per variant.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Timed rounds per runtime.")
_ITERATIONS = flags.DEFINE_integer("iterations", 10, "E per client and round.")
_CLIENTS = flags.DEFINE_integer("clients", 3, "Clients per round.")


def inner_loop_steps_per_second(variant: str, steps: int) -> float:
  model = conv4.build_conv4((28, 28, 1), 5, variant=variant)
  optimizer = reptile_tf.make_inner_optimizer(0.001)
  reptile_tf.build_optimizer(optimizer, model)
  rng = np.random.default_rng(0)
  images = tf.constant(rng.random((50, 28, 28, 1)), tf.float32)
  labels = tf.constant(np.repeat(np.arange(5), 10), tf.int32)

  @tf.function
  def run(seed):
    return reptile_tf.train_steps(model, optimizer, images, labels,
                                  steps=steps, batch_size=10, seed=seed)

  run(tf.constant([0, 0], tf.int64))
  start = time.perf_counter()
  run(tf.constant([0, 1], tf.int64)).numpy()
  return steps / (time.perf_counter() - start)


def round_seconds(make_runner, clients, rounds: int) -> float:
  round_runner = make_runner()
  state = round_runner.initialize()
  state, _ = round_runner.next(state, clients)  # traces and warms up
  start = time.perf_counter()
  for _ in range(rounds):
    state, _ = round_runner.next(state, clients)
  return (time.perf_counter() - start) / rounds


def main(argv):
  del argv
  for variant in ("maxpool", "strided"):
    rate = inner_loop_steps_per_second(variant, _STEPS.value)
    print(f"inner loop, Conv4 {variant:8s} 28x28 batch 10: "
          f"{rate:7.1f} SGD steps/s")

  config = reptile_tf.ReptileConfig(iterations=_ITERATIONS.value)
  rng = np.random.default_rng(0)
  pools = [rng.integers(0, 256, (100, 15, 28, 28, 1), dtype=np.uint8)
           for _ in range(4)]
  work = client_work.BenignReptile(config=config, run_seed=0,
                                   client_pools=pools)
  clients = list(range(_CLIENTS.value))

  def model_fn():
    return conv4.build_conv4((28, 28, 1), 5, seed=0)

  common = dict(model_fn=model_fn, client_work=work, inner_lr=0.001,
                aggregator="secure_mean", secure_sum_bound=10.0)
  local = round_seconds(lambda: inprocess.InProcessRunner(**common), clients,
                        _ROUNDS.value)
  with contexts.tff_runtime():
    federated = round_seconds(
        lambda: runner.TffRunner(**common, image_shape=(28, 28, 1)), clients,
        _ROUNDS.value)
  steps = len(clients) * config.iterations * config.meta_batch * config.inner_steps
  print(f"round ({len(clients)} clients x {steps // len(clients)} steps): "
        f"in-process {local:.2f} s, TFF {federated:.2f} s, "
        f"ratio TFF/in-process {federated / local:.3f} (target <= 1.10)")


if __name__ == "__main__":
  app.run(main)
