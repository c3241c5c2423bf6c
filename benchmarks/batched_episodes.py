r"""Episodes trained one after another vs as one computation, in float32 and
bfloat16 (issue #20, items 2-4).

    .venv/bin/python -m benchmarks.batched_episodes [--quick]
        [--parts=meta_batch,evaluation] [--shapes=28x28x1:10,84x84x3:10]
        [--iterations=2] [--episodes=40] [--steps=50] [--chunks=5,10,20,40]
        [--formulations=grouped,loop,patches] [--repeats=3] [--matmul_size=2048]

Prints the machine and the FLOP/s of a large float32 matmul, then for each
image shape (mini-batch b) and Conv4 variant, in one run:
  - meta_batch: a Reptile client's training (main paper, Algorithm 1: outer
    iterations of B = 5 episodes, 5-way 10-shot, e = 10 Adam steps each),
    `reptile_tf.reptile_iterations` as the clients run it: sequential
    (`--meta_batch_mode=sequential`) in float32 and in mixed_bfloat16, and
    batched (`--meta_batch_mode=batched`, float32);
  - evaluation: the fine-tuning of an evaluation (Section 3.1: 40 episodes x
    50 Adam steps, 5-way 5-shot) one episode after another as
    `episodes_eval.DenseLearner` runs it, in float32 and mixed_bfloat16,
    and each formulation of `fedmeta_tf/models/stacked_conv4.py` (grouped
    convolutions; the models' convolutions side by side in one graph; 3x3
    patches times the kernels in one batched matmul) with the episodes in
    chunks of E trained together.
Each line: Adam steps per second summed over the episodes
(episode-steps/s), the ratio to the sequential float32 line, and the
achieved FLOP/s as a fraction of the matmul's (a step counted as 3x the
forward pass, `workloads.step_flops`; bfloat16 against the float32 matmul).
The settings of a part alternate repeat after repeat, the best of each
kept. Scoring the queries is not timed (a few forward passes per episode).
--quick: --iterations=1 --episodes=10 --steps=10 --chunks=5,10 --repeats=2
--matmul_size=1024, 28x28 only.
"""

import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from benchmarks import machine
from benchmarks import workloads
from binaries import common
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import weights as w
from fedmeta_tf.models import conv4
from fedmeta_tf.models import precision
from fedmeta_tf.models import stacked_conv4

WAYS, SHOTS, LEARNING_RATE = 5, 5, 0.001
# Algorithm 1's client work (Section 3.3): B episodes of K = 10, e steps.
META_BATCH, TRAIN_SHOTS, TRAIN_STEPS = 5, 10, 10
PRECISIONS = ("float32", "mixed_bfloat16")
PARTS = ("meta_batch", "evaluation")

_PARTS = flags.DEFINE_list("parts", list(PARTS), "What to time: "
                           + " | ".join(PARTS) + ".")
_ITERATIONS = flags.DEFINE_integer(
    "iterations", 2, "meta_batch: outer iterations of B = 5 episodes timed.")
_MATMUL_SIZE = flags.DEFINE_integer("matmul_size", 2048,
                                    "n of the n x n reference matmul.")
_SHAPES = flags.DEFINE_list("shapes", ["28x28x1:10", "84x84x3:10"],
                            "Image shapes and mini-batch sizes, HxWxC:batch.")
_VARIANTS = flags.DEFINE_list("variants", ["maxpool"], "Conv4 variants.")
_EPISODES = flags.DEFINE_integer("episodes", 40, "Episodes fine-tuned.")
_STEPS = flags.DEFINE_integer("steps", 50, "Adam steps per episode.")
_CHUNKS = flags.DEFINE_list("chunks", ["5", "10", "20", "40"],
                            "E, episodes trained together.")
_FORMULATIONS = flags.DEFINE_list(
    "formulations", [f.value for f in stacked_conv4.Formulation],
    "stacked_conv4 formulations to time.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats per setting.")
_QUICK = flags.DEFINE_bool("quick", False, "A short run (see the docstring).")


def _episodes(shape, episodes: int, steps: int, batch: int):
  """Support images [episodes, N*K, ...], labels, mini-batches [episodes,
  steps, b] (shuffled epochs, `reptile_tf.minibatch_indices`)."""
  n = WAYS * SHOTS
  images = tf.random.stateless_uniform([episodes, n, *shape], [0, 1])
  labels = tf.constant(np.tile(np.arange(WAYS), (episodes, SHOTS)), tf.int32)
  batches = tf.stack([reptile_tf.minibatch_indices(n, min(batch, n), steps,
                                                   [7, e])
                      for e in range(episodes)])
  return images, labels, batches


def _meta_batch(shape, batch: int, variant, mode, precision_name,
                iterations: int):
  """A client's outer iterations (`reptile_tf.reptile_iterations`) as one
  tf.function; Conv4 built under Keras policy `precision_name`."""
  config = reptile_tf.ReptileConfig(
      ways=WAYS, shots=TRAIN_SHOTS, iterations=iterations,
      meta_batch=META_BATCH, inner_steps=TRAIN_STEPS, inner_batch=batch,
      inner_lr=LEARNING_RATE, meta_batch_mode=mode)
  with precision.policy(precision_name):
    model, optimizer = reptile_tf.make_learner(
        lambda: conv4.build_conv4(shape, WAYS, variant=variant), LEARNING_RATE)
  pool = tf.constant(np.random.default_rng(0).integers(
      0, 256, (4 * WAYS, TRAIN_SHOTS, *shape), dtype=np.uint8))
  plan = reptile_tf.ReptilePlan(
      episode_fn=reptile_tf.pool_episode_fn(pool, config), seed=[0, 0])
  start = w.read(model.trainable_variables)

  @tf.function
  def run():
    reptile_tf.reset_optimizer(optimizer)
    _, loss_sum = reptile_tf.reptile_iterations(
        model, optimizer, start, tf.constant(0.0), plan=plan, config=config,
        start=0, stop=iterations)
    return loss_sum

  return run


def _sequential(shape, variant, data, precision_name="float32"):
  """Today's loop: a timer of one tf.function over every episode."""
  images, labels, batches = data
  with precision.policy(precision_name):
    model, optimizer = reptile_tf.make_learner(
        lambda: conv4.build_conv4(shape, WAYS, variant=variant), LEARNING_RATE)
  weights = w.read(model.trainable_variables)

  @tf.function
  def run():
    for e in tf.range(tf.shape(images)[0]):
      w.assign(model.trainable_variables, weights)
      reptile_tf.reset_optimizer(optimizer)
      reptile_tf.train_steps(model, optimizer, images[e], labels[e],
                             steps=tf.shape(batches)[1], batch_size=0,
                             seed=None, batches=batches[e])
    return model.trainable_variables[0][0, 0, 0, 0]

  return run, weights


def _stacked(weights, variant, data, formulation, chunk: int):
  """A timer of one tf.function over the episodes in chunks of `chunk`."""
  images, labels, batches = data
  start = stacked_conv4.repeat(weights, chunk)

  @tf.function
  def run():
    total = tf.constant(0.0)
    for first in range(0, images.shape[0], chunk):
      part = slice(first, first + chunk)
      out, _ = stacked_conv4.train_steps(
          start, images[part], labels[part], batches[part],
          learning_rate=LEARNING_RATE, variant=variant,
          formulation=formulation)
      total += out[0][0, 0, 0, 0, 0]
    return total

  return run


def _timer(fn, work: int):
  """`fn` warmed up, as a `workloads.interleaved_rates` timer: repeat ->
  `work` / seconds of one call."""
  fn().numpy()

  def rate(repeat: int) -> float:
    del repeat
    start = time.perf_counter()
    fn().numpy()
    return work / (time.perf_counter() - start)

  return rate


def _print_rates(part: str, label: str, rates: dict, flops_per_step: int,
                 peak: float) -> None:
  baseline = rates["sequential float32"]
  for name, rate in rates.items():
    print(f"{part}, Conv4 {label}: {name:26s} {rate:8.1f} episode-steps/s, "
          f"{rate / baseline:.2f}x sequential float32, "
          f"{rate * flops_per_step / peak:4.0%} of matmul", flush=True)


def _time_meta_batch(shape, batch, variant, iterations, repeats):
  settings = {"sequential float32": ("sequential", "float32"),
              "sequential mixed_bfloat16": ("sequential", "mixed_bfloat16"),
              "batched float32": ("batched", "float32")}
  work = iterations * META_BATCH * TRAIN_STEPS
  return workloads.interleaved_rates(
      {name: _timer(_meta_batch(shape, batch, variant, mode, precision_name,
                                iterations), work)
       for name, (mode, precision_name) in settings.items()}, repeats)


def _time_evaluation(shape, batch, variant, episodes, steps, chunks,
                     formulations, repeats):
  data = _episodes(shape, episodes, steps, batch)
  fns = {}
  for precision_name in PRECISIONS:
    fns[f"sequential {precision_name}"], weights = _sequential(
        shape, variant, data, precision_name)
  for formulation in formulations:
    for chunk in chunks:
      fns[f"{formulation.value} E={chunk} float32"] = _stacked(
          weights, variant, data, formulation, chunk)
  return workloads.interleaved_rates(
      {name: _timer(fn, episodes * steps) for name, fn in fns.items()},
      repeats)


@common.user_errors_exit_2
def main(argv):
  del argv
  episodes, steps, repeats = _EPISODES.value, _STEPS.value, _REPEATS.value
  iterations, size = _ITERATIONS.value, _MATMUL_SIZE.value
  chunks = [int(c) for c in _CHUNKS.value]
  shapes = [workloads.parse_shape(s) for s in _SHAPES.value]
  if _QUICK.value:
    episodes, steps, repeats, chunks = 10, 10, 2, [5, 10]
    iterations, size, shapes = 1, 1024, shapes[:1]
  formulations = [stacked_conv4.parse_formulation(f)
                  for f in _FORMULATIONS.value]
  parts = _PARTS.value
  if not parts or set(parts) - set(PARTS):
    raise ValueError(f"--parts: each of {', '.join(PARTS)}, got {parts}")
  if any(c < 1 or episodes % c for c in chunks):
    raise ValueError(f"--chunks: each must divide --episodes={episodes}, "
                     f"got {chunks}")
  if iterations < 1 or size < 16:
    raise ValueError("--iterations must be >= 1 and --matmul_size >= 16")
  machine.print_machine()
  peak = workloads.matmul_flops_per_second(size)
  print(f"reference: float32 matmul {size}x{size}: {peak / 1e9:7.1f} GFLOP/s",
        flush=True)
  for shape, batch in shapes:
    for variant in _VARIANTS.value:
      label = f"{variant} {'x'.join(map(str, shape))} batch {batch}"
      flops_per_step = workloads.step_flops(shape, batch, variant)
      if "meta_batch" in parts:
        rates = _time_meta_batch(shape, batch, variant, iterations, repeats)
        _print_rates("meta-batch", f"{label}, B={META_BATCH} x {iterations} "
                     f"iterations x {TRAIN_STEPS} steps", rates,
                     flops_per_step, peak)
      if "evaluation" in parts:
        rates = _time_evaluation(shape, batch, variant, episodes, steps,
                                 chunks, formulations, repeats)
        _print_rates("evaluation", f"{label}, {episodes} episodes x {steps} "
                     "steps", rates, flops_per_step, peak)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
