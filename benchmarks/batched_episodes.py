r"""Episodes fine-tuned one after another vs E at once (issue #20, item 2).

    .venv/bin/python -m benchmarks.batched_episodes [--quick]
        [--shapes=28x28x1:10,84x84x3:10] [--episodes=40] [--steps=50]
        [--chunks=5,10,20,40] [--formulations=grouped,loop] [--repeats=3]

The fine-tuning of an evaluation (main paper, Section 3.1: 40 episodes x 50
Adam steps, 5-way 5-shot, mini-batch b), timed three ways on the same
episodes and mini-batches:
  - sequential: what `episodes_eval.DenseLearner` runs today, a Keras Conv4
    and `reptile_tf.train_steps`, one episode after another in one
    tf.function;
  - each formulation of `fedmeta_tf/models/stacked_conv4.py` (grouped
    convolutions; the models' convolutions side by side in one graph), the
    episodes in chunks of E trained together.
Prints the machine, then per shape and variant: episode-steps per second
(episodes x steps / seconds) of each, and each one's ratio to sequential
(issue #20's target: >= 1.5x at 28x28, 40 episodes x 50 steps). The
settings' timings alternate repeat after repeat, the best of each kept.
Scoring the queries is not timed (a few forward passes per episode).
--quick: --episodes=10 --steps=10 --chunks=5,10 --repeats=2, 28x28 only.
"""

import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from benchmarks import machine
from benchmarks.workloads import interleaved_rates
from benchmarks.workloads import parse_shape
from binaries import common
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.models import conv4
from fedmeta_tf.models import stacked_conv4

WAYS, SHOTS, LEARNING_RATE = 5, 5, 0.001

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


def _sequential(shape, variant, data):
  """Today's loop: a timer of one tf.function over every episode."""
  images, labels, batches = data
  model = conv4.build_conv4(shape, WAYS, variant=variant)
  weights = [tf.constant(v) for v in model.get_weights()]
  optimizer = reptile_tf.make_inner_optimizer(LEARNING_RATE)
  reptile_tf.build_optimizer(optimizer, model)

  @tf.function
  def run():
    for e in tf.range(tf.shape(images)[0]):
      for var, value in zip(model.trainable_variables, weights):
        var.assign(value)
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
      out = stacked_conv4.train_steps(
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


@common.user_errors_exit_2
def main(argv):
  del argv
  episodes, steps, repeats = _EPISODES.value, _STEPS.value, _REPEATS.value
  chunks = [int(c) for c in _CHUNKS.value]
  shapes = [parse_shape(s) for s in _SHAPES.value]
  if _QUICK.value:
    episodes, steps, repeats, chunks = 10, 10, 2, [5, 10]
    shapes = shapes[:1]
  formulations = [stacked_conv4.parse_formulation(f)
                  for f in _FORMULATIONS.value]
  if any(c < 1 or episodes % c for c in chunks):
    raise ValueError(f"--chunks: each must divide --episodes={episodes}, "
                     f"got {chunks}")
  machine.print_machine()
  for shape, batch in shapes:
    for variant in _VARIANTS.value:
      data = _episodes(shape, episodes, steps, batch)
      sequential, weights = _sequential(shape, variant, data)
      fns = {"sequential": sequential}
      for formulation in formulations:
        for chunk in chunks:
          fns[f"{formulation.value} E={chunk}"] = _stacked(
              weights, variant, data, formulation, chunk)
      rates = interleaved_rates(
          {name: _timer(fn, episodes * steps) for name, fn in fns.items()},
          repeats)
      label = f"{variant} {'x'.join(map(str, shape))} batch {batch}"
      for name, rate in rates.items():
        print(f"batched, Conv4 {label}, {episodes} episodes x {steps} steps: "
              f"{name:12s} {rate:8.1f} episode-steps/s, "
              f"{rate / rates['sequential']:.2f}x sequential", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
