"""An evaluation's episodes fine-tuned together (issue #20, item 2).

`episodes_eval.make_episodes_fn` fine-tunes one episode after another with
`DenseLearner` (Adam on a Keras Conv4, its dense head included; main paper,
Algorithm 1's FLClientFineTuning). Here the same episodes, the same
mini-batches and the same scores come from one computation over the E
episodes of a chunk: the weights under test repeated E times
(`stacked_conv4`), each copy fine-tuned by its own fresh Adam on its own
episode. Episode e's scores equal the one-at-a-time loop's to float
tolerance (tests/evaluation/batched_eval_test.py), so a curve does not
depend on the formulation beyond rounding.

Which formulation an evaluation uses is a process-wide choice made once by
a binary (`configure`, `--eval_formulation`), like its parallel streams
(`fedmeta_tf/parallel.py`): `sequential`, or `grouped` / `loop` /
`patches` stacks (`stacked_conv4.Formulation`); `auto` (`auto_formulation`)
stacks on a GPU, where a 10-image step leaves the device idle, and runs one
episode at a time on a CPU, where no stacking measured faster with both
streams in use (`benchmarks.evaluation_loop`, `benchmarks.batched_episodes`;
docs/results/performance.md). The local defense's metric-head learner
(Algorithm 2) stacks the same way (`batched_heads.py`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import tensorflow as tf

from fedmeta_tf.data import episodes as episodes_lib
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.models import stacked_conv4
from fedmeta_tf import parallel

SEQUENTIAL = "sequential"
AUTO = "auto"
CHOICES = (AUTO, SEQUENTIAL, *(f.value for f in stacked_conv4.Formulation))
# Episodes per stacked computation: on a 2-core CPU, fine-tuning alone,
# stacks of 10 ran faster than stacks of 40 (performance.md, "Evaluation
# fine-tuning").
MAX_STACK = 10

_formulation: Optional[stacked_conv4.Formulation] = None  # `configure`


def auto_formulation() -> Optional[stacked_conv4.Formulation]:
  """`auto`: grouped stacks on a GPU, one episode at a time (None) on a CPU.

  On the 2-core CPU with both streams in use, grouped stacks of 10 ran
  slower than one episode at a time in two runs of
  `benchmarks.evaluation_loop` (0.85x / 0.96x in float32, 0.93x / 0.81x in
  bfloat16): the streams already keep the cores busy. On a GPU batching is
  the lever (issue #20); not yet measured there (`benchmarks.evaluation_loop`
  on a GPU machine would).
  """
  return stacked_conv4.Formulation.GROUPED if parallel.gpu_visible() else None


def configure(choice: str) -> Optional[stacked_conv4.Formulation]:
  """Sets the formulation of this process's evaluations; returns it (None:
  sequential)."""
  global _formulation
  if choice not in CHOICES:
    raise ValueError(f"--eval_formulation must be one of {', '.join(CHOICES)}"
                     f", got {choice!r}")
  _formulation = (None if choice == SEQUENTIAL else auto_formulation()
                  if choice == AUTO else stacked_conv4.Formulation(choice))
  return _formulation


def formulation() -> Optional[stacked_conv4.Formulation]:
  """The configured stacked formulation; None: one episode at a time."""
  return _formulation


def chunks_per_replica(count: int, replicas: int, sequential: int) -> int:
  """Chunks each replica gets of `count` episodes: `sequential` (progress
  granularity) one at a time, else enough for at most `MAX_STACK` each."""
  if _formulation is None:
    return sequential
  return max(1, math.ceil(count / (replicas * MAX_STACK)))


def _stacked_predictor(weights, index: int, variant, dtype):
  """Model `index` of the stack as a predictor: (images, training) -> logits
  (batch statistics, as the Keras Conv4 in training mode)."""

  def predict(images, training=True):
    del training  # Conv4 uses batch statistics in every mode
    return stacked_conv4.logits([v[index:index + 1] for v in weights],
                                images[None], variant=variant,
                                formulation=stacked_conv4.Formulation.LOOP,
                                compute_dtype=dtype)[0]

  return predict


def scores_along(schedule, state, train, score_all) -> tf.Tensor:
  """float32 [E, points, metrics]: `score_all(state)` at the schedule's
  points, `state = train(state, first_step, stop_step)` between them (the
  stacked counterpart of `episodes_eval.fine_tune_curve`)."""
  points = [score_all(state)] if schedule.at_start else []
  for chunk in range(schedule.chunks):
    first = chunk * schedule.chunk
    stop = first + (schedule.last_chunk if chunk == schedule.chunks - 1
                    else schedule.chunk)
    state = train(state, first, stop)
    points.append(score_all(state))
  return tf.stack(points, axis=1)


@dataclasses.dataclass(frozen=True)
class DenseFitting:
  """How a `DenseLearner` fine-tunes, as stacked models do it."""
  schedule: Any  # episodes_eval.Schedule
  batch: int
  learning_rate: float
  variant: Any  # conv4.Conv4Variant
  dtype: tf.DType
  stack: stacked_conv4.Formulation

  def scores(self, weights, task, episodes, contexts, seeds) -> tf.Tensor:
    """float32 [E, points, metrics]: `task`'s scores of its E episodes at
    the schedule's points, each fine-tuned from `weights` (DenseLearner: a
    fresh Adam, the mini-batches of its seed)."""
    count, steps = len(episodes), self.schedule.steps
    images = tf.stack([e.support_images for e in episodes])
    labels = tf.stack([e.support_labels for e in episodes])
    batches = tf.stack([reptile_tf.shuffled_batches(episode, steps,
                                                    self.batch, seed)
                        for episode, seed in zip(episodes, seeds)])

    def train(state, first, stop):
      stacked, slots = state
      stacked, slots, _ = stacked_conv4.continue_steps(
          stacked, slots, first, images, labels, batches[:, first:stop],
          learning_rate=self.learning_rate, variant=self.variant,
          formulation=self.stack, compute_dtype=self.dtype)
      return stacked, slots

    def score_all(state):
      return tf.stack([task.score(
          _stacked_predictor(state[0], e, self.variant, self.dtype),
          episode=episodes[e], context=contexts[e]) for e in range(count)])

    stacked = stacked_conv4.repeat(weights, count)
    return scores_along(self.schedule,
                        (stacked, stacked_conv4.fresh_slots(stacked)),
                        train, score_all)


def _fitting(learner, schedule, stack: stacked_conv4.Formulation):
  """How `learner`'s episodes fine-tune stacked (`DenseFitting`,
  `batched_heads.HeadFitting`); None for a learner not stacked."""
  # pylint: disable=g-import-not-at-top
  from fedmeta_tf.evaluation import batched_heads
  from fedmeta_tf.evaluation import defended
  from fedmeta_tf.evaluation import episodes_eval
  if isinstance(learner, episodes_eval.DenseLearner):
    variant, dtype = stacked_conv4.stackable(learner.model)
    return DenseFitting(
        schedule=schedule, batch=learner.batch,
        learning_rate=float(learner.optimizer.learning_rate.numpy()),
        variant=variant, dtype=dtype, stack=stack)
  if isinstance(learner, defended.MetricHeadEvalLearner):
    return batched_heads.HeadFitting.of(learner.learner, schedule, stack)
  return None


def make_batched_evaluate(learner, schedule, make_tasks,
                          stack: stacked_conv4.Formulation):
  """`episodes_eval.make_episodes_fn`'s `evaluate(weights, data, seed, start,
  stop) -> float32 [episodes, points, metrics]` for a `DenseLearner` or the
  local defense's metric-head learner, its episodes fine-tuned `MAX_STACK`
  at a time by `stack`; same results. None for other learners. The
  learner's Keras objects are read (variant, precision, learning rate,
  head), never trained."""
  from fedmeta_tf.evaluation import episodes_eval  # pylint: disable=g-import-not-at-top
  fitting = _fitting(learner, schedule, stack)
  if fitting is None:
    return None

  @tf.function
  def evaluate_stack(weights, data, seed, start, count):
    per_task = []
    for task in make_tasks(data):
      seeds = [episodes_eval.episode_seed(seed, task.stream, start + e)
               for e in range(count)]
      drawn = [task.sample(s) for s in seeds]
      per_task.append(fitting.scores(
          weights, task, [d[0] for d in drawn], [d[1] for d in drawn],
          [episodes_lib.fold_seed(s, episodes_lib.STREAM_MINIBATCH)
           for s in seeds]))
    return tf.concat(per_task, axis=2)  # [count, points, metrics]

  def evaluate(weights, data, seed, start, stop):
    return tf.concat([
        evaluate_stack(weights, data, seed, tf.constant(first, tf.int32),
                       min(MAX_STACK, stop - first))
        for first in range(start, stop, MAX_STACK)], axis=0)

  return evaluate
