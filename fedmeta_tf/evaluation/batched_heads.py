"""The local defense's metric heads fine-tuned together (issue #20, item 2).

`defended.MetricHeadEvalLearner` runs Algorithm 2's fine-tuning (main
paper, Section 4.1, lines 6-17; `secure_fine_tuning.MetricHeadLearner`) one
episode at a time: theta' into the feature extractor, a fresh head (alpha =
sigmoid(0), beta at its start), a fresh Adam; iteration t trains on the
queries of row t of the episode's query schedule, embedding the support set
as one batch; alpha and beta alone for the first `head_only_steps`
iterations (the feature gradients zeroed), then everything, the optimizer
reset when the joint phase starts. Here the E episodes of a chunk run as E
stacked feature extractors (`stacked_conv4.features`) with E heads
(`matching.LOG_PROBS` on stacked gates and scales), each with its own Adam
(`stacked_conv4.adam_step`), on the same query schedules, and are scored
model by model against their own support sets. Episode e's scores equal the
one-at-a-time loop's to float tolerance
(tests/evaluation/batched_eval_test.py).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import tensorflow as tf

from fedmeta_tf.defenses.local import secure_fine_tuning
from fedmeta_tf.evaluation import batched_eval
from fedmeta_tf.models import conv4
from fedmeta_tf.models import matching
from fedmeta_tf.models import stacked_conv4


def _features(fitting: "HeadFitting", variables, images, stack) -> tf.Tensor:
  """float32 [E, B, D] features of the stacked extractors in `variables`
  (their heads' gates and scales last) on images [E, B, H, W, C]."""
  return stacked_conv4.features(variables[:-2], images,
                                variant=fitting.variant, formulation=stack,
                                compute_dtype=fitting.dtype)


class _HeadPredictor:
  """Model `index` of the stack as `episodes_eval.Predictor`: its head's
  log-probabilities against its episode's support set (embedded once, as
  `defended._SupportPredictor` does)."""

  def __init__(self, fitting: "HeadFitting", variables, index: int, episode):
    self._fitting = fitting
    self._variables = [v[index:index + 1] for v in variables]
    self._memory = (self._embed(episode.support_images),
                    tf.one_hot(episode.support_labels, fitting.ways))

  def _embed(self, images) -> tf.Tensor:
    return _features(self._fitting, self._variables, images[None],
                     stacked_conv4.Formulation.LOOP)[0]

  def __call__(self, images, training=True):
    del training  # batch statistics always (models/conv4.py)
    gate_logits, scale = self._variables[-2:]
    return matching.LOG_PROBS[self._fitting.config.head](
        tf.sigmoid(gate_logits[0]), scale[0], self._embed(images),
        *self._memory)


@dataclasses.dataclass(frozen=True)
class HeadFitting:
  """How a `MetricHeadLearner` fine-tunes, as stacked models do it."""
  schedule: Any  # episodes_eval.Schedule
  config: secure_fine_tuning.DefenseConfig
  ways: int
  query_schedule: Any  # MetricHeadLearner.query_schedule
  feature_dim: int
  initial_scale: float
  variant: conv4.Conv4Variant
  dtype: tf.DType
  stack: stacked_conv4.Formulation

  @classmethod
  def of(cls, learner: secure_fine_tuning.MetricHeadLearner, schedule,
         stack: stacked_conv4.Formulation) -> "HeadFitting":
    variant, dtype = stacked_conv4.stackable_features(
        learner.classifier.features)
    head = learner.classifier.head
    return cls(schedule=schedule, config=learner.config, ways=learner.ways,
               query_schedule=learner.query_schedule,
               feature_dim=int(head.gate_logits.shape[0]),
               initial_scale=head.initial_scale, variant=variant,
               dtype=dtype, stack=stack)

  def _step(self, variables, slots, step, images, labels, queries):
    """Algorithm 2's iteration `step` for every model (lines 9-17)."""
    head_only = self.config.head_only_steps
    fresh = tf.cast(tf.not_equal(step, head_only), tf.float32)
    slots = ([m * fresh for m in slots[0]], [v * fresh for v in slots[1]])
    with tf.GradientTape() as tape:
      tape.watch(variables)
      log_probs = matching.queries_from_support(
          functools.partial(matching.LOG_PROBS[self.config.head],
                            tf.sigmoid(variables[-2]), variables[-1]),
          _features(self, variables, images, self.stack), labels, queries,
          num_classes=self.ways, leave_one_out=self.config.leave_one_out)
      # The sum of the models' mean losses: each model's gradient is its own.
      loss = tf.reduce_sum(matching.nll(
          log_probs, tf.gather(labels, queries, batch_dims=1)))
    grads = tape.gradient(loss, variables)
    keep = tf.cast(step >= head_only, tf.float32)
    grads = [g * keep for g in grads[:-2]] + grads[-2:]
    return stacked_conv4.adam_step(
        variables, grads, slots,
        tf.where(step >= head_only, step - head_only, step),
        learning_rate=self.config.learning_rate)

  def scores(self, weights, task, episodes, contexts, seeds) -> tf.Tensor:
    """float32 [E, points, metrics], as `batched_eval.DenseFitting.scores`;
    `weights` are theta' of the feature extractor."""
    count = len(episodes)
    images = tf.stack([e.support_images for e in episodes])
    labels = tf.stack([e.support_labels for e in episodes])
    plans = tf.stack([self.query_schedule(tf.shape(e.support_labels)[0], seed)
                      for e, seed in zip(episodes, seeds)])

    def train(state, first, stop):
      variables, slots = state
      for step in tf.range(first, stop):
        variables, slots = self._step(variables, slots, step, images, labels,
                                      plans[:, step])
      return variables, slots

    def score_all(state):
      return tf.stack([task.score(
          _HeadPredictor(self, state[0], e, episodes[e]), episode=episodes[e],
          context=contexts[e]) for e in range(count)])

    variables = stacked_conv4.repeat(weights, count) + [
        tf.zeros([count, self.feature_dim]),  # alpha = sigmoid(0) = 0.5
        tf.fill([count], self.initial_scale)]
    return batched_eval.scores_along(
        self.schedule, (variables, stacked_conv4.fresh_slots(variables)),
        train, score_all)
