"""Workloads shared by the benchmarks (no flags: importable by each).

  - `inner_loop_rates`: the Reptile inner loop in one tf.function call vs
    one call per SGD step; `in_graph_timer` / `interleaved_rates`: several
    settings of the in-graph loop timed in turn;
  - `round_setup` / `round_seconds`: a small federated Reptile job (Conv4
    28x28, secure-sum mean) and the mean time of its rounds;
  - `matmul_flops_per_second` / `step_flops`: the reference FLOP/s of a
    large matmul and the FLOPs of one Conv4 SGD step.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.meta import client_work
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.models import conv4
from fedmeta_tf.models import precision

WAYS, EXAMPLES_PER_CLASS = 5, 10


def run_json_child(module: str, args: list[str], what: str) -> dict:
  """Runs `python -m module *args` in a fresh process (TensorFlow's thread
  pools and peak memory are per process) and returns the JSON object of its
  last line that starts with '{'; RuntimeError naming `what` if it fails."""
  result = subprocess.run([sys.executable, "-m", module, *args],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  lines = [l for l in result.stdout.splitlines() if l.startswith("{")]
  if result.returncode or not lines:
    raise RuntimeError(f"{what} failed (exit {result.returncode}): "
                       f"{result.stderr.strip().splitlines()[-1:]}")
  return json.loads(lines[-1])


def parse_shape(text: str) -> tuple[tuple[int, int, int], int]:
  """'84x84x3:10' -> ((84, 84, 3), 10); ValueError naming the bad entry."""
  try:
    dims, batch = text.split(":")
    h, w, c = (int(x) for x in dims.lower().split("x"))
    shape, batch = (h, w, c), int(batch)
  except ValueError:
    raise ValueError(f"--shapes entry {text!r} is not HxWxC:batch, e.g. "
                     "84x84x3:10") from None
  if min(shape) < 1 or batch < 1 or h < 16 or w < 16:
    raise ValueError(f"--shapes entry {text!r}: H, W >= 16 and C, batch >= 1")
  return shape, batch


def _inner_loop_setup(image_shape, variant: str, precision_name: str):
  """(model, optimizer, images, labels): Conv4 (64 filters) built under
  Keras policy `precision_name`, Adam, a 5-way episode of 50 random images."""
  with precision.policy(precision_name):
    model = conv4.build_conv4(image_shape, WAYS, variant=variant)
  optimizer = reptile_tf.make_inner_optimizer(0.001)
  reptile_tf.build_optimizer(optimizer, model)
  rng = np.random.default_rng(0)
  n = WAYS * EXAMPLES_PER_CLASS
  images = tf.constant(rng.random((n, *image_shape)), tf.float32)
  labels = tf.constant(np.repeat(np.arange(WAYS), EXAMPLES_PER_CLASS),
                       tf.int32)
  return model, optimizer, images, labels


def in_graph_timer(image_shape, batch: int, variant: str, steps: int,
                   precision_name: str = "float32"):
  """A function repeat -> SGD steps/s of one in-graph call of `steps` inner
  steps (what the client work runs), traced and warmed up here, so that
  timings of several settings can be interleaved."""
  model, optimizer, images, labels = _inner_loop_setup(image_shape, variant,
                                                       precision_name)

  @tf.function
  def in_graph(seed):
    return reptile_tf.train_steps(model, optimizer, images, labels,
                                  steps=steps, batch_size=batch, seed=seed)

  in_graph(tf.constant([0, 0], tf.int64)).numpy()

  def rate(repeat: int) -> float:
    start = time.perf_counter()
    in_graph(tf.constant([0, 1 + repeat], tf.int64)).numpy()
    return steps / (time.perf_counter() - start)

  return rate


def inner_loop_rates(image_shape, batch: int, variant: str, steps: int,
                     python_steps: int, repeats: int = 3,
                     precision_name: str = "float32"
                     ) -> tuple[float, float]:
  """(in-graph, per-step-call) SGD steps/s of the Reptile inner loop.

  Conv4 (64 filters) on a 5-way episode of 50 random images of
  `image_shape`, Adam, built under Keras policy `precision_name`;
  per-step-call is NaN when `python_steps` is 0. Each is the best of
  `repeats` timings (the machine may be shared).
  """
  timer = in_graph_timer(image_shape, batch, variant, steps, precision_name)
  graph_rate = max(timer(repeat) for repeat in range(repeats))
  if python_steps <= 0:
    return graph_rate, float("nan")
  model, optimizer, images, labels = _inner_loop_setup(image_shape, variant,
                                                       precision_name)

  @tf.function
  def one_step(seed):
    return reptile_tf.train_steps(model, optimizer, images, labels,
                                  steps=1, batch_size=batch, seed=seed)

  seeds = [tf.constant([1, i], tf.int64) for i in range(python_steps + 1)]
  one_step(seeds[-1]).numpy()
  call_rate = 0.0
  for _ in range(repeats):
    start = time.perf_counter()
    for seed in seeds[:-1]:
      one_step(seed).numpy()  # the fetch of `session.run([train_op, loss])`
    call_rate = max(call_rate, python_steps / (time.perf_counter() - start))
  return graph_rate, call_rate


def interleaved_rates(timers: dict, repeats: int) -> dict:
  """{name: best steps/s} of `timers` ({name: in_graph_timer}), timed in
  turn repeat after repeat, so a shared machine's slow spells fall on every
  setting alike and their ratio stays fair."""
  best = {name: 0.0 for name in timers}
  for repeat in range(repeats):
    for name, timer in timers.items():
      best[name] = max(best[name], timer(repeat))
  return best


def fastest_seconds(fn, repeats: int) -> float:
  """Seconds of the fastest of `repeats` calls of fn() (warm up first)."""
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def round_seconds(make_runner, clients, rounds: int) -> float:
  """Seconds of the fastest of `rounds` rounds, after a warm-up round."""
  round_runner = make_runner()
  state = round_runner.initialize()

  def one_round():
    nonlocal state
    state, _ = round_runner.next(state, clients)

  one_round()  # traces and warms up
  return fastest_seconds(one_round, rounds)


def round_setup(iterations: int, num_clients: int):
  """(RoundRunner kwargs, config) of a small 28x28 federated Reptile job."""
  config = reptile_tf.ReptileConfig(iterations=iterations)
  rng = np.random.default_rng(0)
  pools = [rng.integers(0, 256, (100, 15, 28, 28, 1), dtype=np.uint8)
           for _ in range(num_clients)]
  work = client_work.BenignReptile(config=config, run_seed=0,
                                   client_pools=pools)

  def model_fn():
    return conv4.build_conv4((28, 28, 1), 5, seed=0)

  return dict(model_fn=model_fn, client_work=work, inner_lr=0.001,
              aggregator=aggregators.parse_aggregator("secure_mean")), config


BACKWARD_FACTOR = 3  # forward + input gradient + weight gradient


def matmul_flops_per_second(n: int, timings: int = 3) -> float:
  """FLOP/s of float32 n x n matmuls chained in one tf.function (the best
  of `timings` timings of ~20 GFLOP each)."""
  repeats = max(2, int(2e10 / (2 * n**3)))
  a = tf.random.stateless_normal([n, n], seed=[0, 1]) / n**0.5
  b = tf.random.stateless_normal([n, n], seed=[0, 2]) / n**0.5

  @tf.function
  def chain(x):
    for _ in tf.range(repeats):
      x = tf.matmul(x, b)
    return tf.reduce_sum(x)

  chain(a).numpy()
  best = fastest_seconds(lambda: chain(a).numpy(), timings)
  return 2 * n**3 * repeats / best


def forward_flops(image_shape, batch: int, variant: str) -> int:
  """Float operations of one training-mode forward pass of a batch
  (TensorFlow's profiler)."""
  model = conv4.build_conv4(image_shape, WAYS, variant=variant)
  graph = tf.function(lambda x: model(x, training=True)).get_concrete_function(
      tf.TensorSpec([batch, *image_shape], tf.float32)).graph
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options["output"] = "none"
  logger = tf.get_logger()
  level = logger.level
  logger.setLevel("ERROR")  # the profiler's deprecation notices
  try:
    return tf.compat.v1.profiler.profile(graph,
                                         options=options).total_float_ops
  finally:
    logger.setLevel(level)


def step_flops(image_shape, batch: int, variant: str) -> int:
  """FLOPs of one SGD step: `BACKWARD_FACTOR` x the forward pass (the usual
  convention; it slightly overcounts the first layer)."""
  return BACKWARD_FACTOR * forward_flops(image_shape, batch, variant)
