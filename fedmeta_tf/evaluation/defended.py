"""Backdoor evaluation of the local defense, per fine-tuning iteration.

Experiment 3 (main paper, Section 4.2) measures exactly what Experiment 2
measures (`backdoor.py`): main-task accuracy, backdoor accuracy on the
attack-training and attack-validation images, and meta-test accuracy,
after every `curve_every` fine-tuning iterations, averaged over episodes.
Only the learner differs: Algorithm 2 (lines 6-17) on a metric head
(`secure_fine_tuning.MetricHeadLearner`, matching network or ProtoNet)
instead of Adam on the dense layer. Tasks, seeds and metrics are
`backdoor`'s own, run by the same loop (`episodes_eval.make_episodes_fn`),
so curves with and without the defense compare models on the same
episodes by construction.

Experiment 3(c) (supervised fine-tuning after the Glorot mix) needs nothing
here: it is `backdoor.BackdoorEvaluator` on the mixed weights.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
import tensorflow as tf

from fedmeta_tf.defenses.local import secure_fine_tuning
from fedmeta_tf.evaluation import backdoor
from fedmeta_tf.evaluation import episodes_eval


class _SupportPredictor:
  """`model(images, training=True) -> scores` for `backdoor`'s metrics: the
  head's log-probabilities against the support set, embedded once when the
  predictor is made (after the fine-tuning iterations it scores)."""

  def __init__(self, learner, support_images, support_labels):
    self._learner = learner
    self._memory = learner.memory(support_images, support_labels)

  def __call__(self, images, training=True):
    del training  # batch statistics always (models/conv4.py)
    return self._learner.predict(images, None, None, memory=self._memory)


class MetricHeadEvalLearner:
  """`episodes_eval.Learner` of Algorithm 2: theta' into the feature
  extractor, a fresh head; iteration t trains on the queries of row t of
  the episode's query schedule (line 9); scores against the support set."""

  def __init__(self, learner: secure_fine_tuning.MetricHeadLearner):
    self.learner = learner

  def start(self, weights, episode, seed):
    self.learner.start(weights)
    return self.learner.query_schedule(tf.shape(episode.support_labels)[0],
                                       seed)

  def train(self, episode, plan, chunk, first_step, steps) -> None:
    del chunk  # iterations are numbered from the first
    for j in tf.range(steps):
      step = first_step + j
      self.learner.step(episode.support_images, episode.support_labels,
                        plan[step], step)

  def predictor(self, episode) -> episodes_eval.Predictor:
    return _SupportPredictor(self.learner, episode.support_images,
                             episode.support_labels)

  def restore(self, weights) -> None:
    del weights  # `start` loads theta' afresh for every episode


def check_configs(defense: secure_fine_tuning.DefenseConfig,
                  evaluation: backdoor.BackdoorEvalConfig) -> None:
  """Raises ValueError when the two configurations disagree."""
  ep = evaluation.episode
  if ep.steps != defense.steps:
    raise ValueError(f"evaluation steps ({ep.steps}) != defense steps "
                     f"({defense.steps})")
  if defense.leave_one_out and ep.shots < 2:
    raise ValueError("leave_one_out needs shots >= 2")


class DefenseEvaluator:
  """Averaged backdoor metrics of the defense started from given theta'.

  The defended counterpart of `backdoor.BackdoorEvaluator`; one instance
  (one traced function per replica) serves every client and delta.
  """

  def __init__(self, *, image_shape, config: backdoor.BackdoorEvalConfig,
               defense: secure_fine_tuning.DefenseConfig,
               variant: str = "maxpool", filters: int = 64,
               parallelism: Optional[int] = None):
    """`parallelism`: episodes evaluated at once, each chunk of episodes on
    its own learner (`fedmeta_tf/parallel.py`; default `parallel.streams()`);
    results do not depend on it."""
    check_configs(defense, config)
    self.config = config

    def make_learner():
      return MetricHeadEvalLearner(secure_fine_tuning.MetricHeadLearner(
          image_shape=image_shape, ways=config.episode.ways, config=defense,
          variant=variant, filters=filters))

    self._evaluator = episodes_eval.EpisodeEvaluator(
        make_learner, schedule=config.schedule,
        make_tasks=backdoor.backdoor_tasks(config), metrics=backdoor.METRICS,
        episodes=config.episode.episodes, parallelism=parallelism)
    self.learner = self._evaluator.learner.learner

  def curves(self, feature_weights, *, data: Mapping[str, np.ndarray],
             seed: int, client: Optional[int] = None
             ) -> dict[str, np.ndarray]:
    """{metric: mean over episodes, [points]} at `config.curve_steps`, on
    `data` (`backdoor.eval_data`) with the episodes of
    `backdoor.BackdoorEvaluator(..., data=data, seed=seed, client=client)`;
    `feature_weights` is theta' restricted to the feature extractor."""
    backdoor.check_eval_data(data, self.config)
    data = {k: tf.constant(v) for k, v in data.items()}
    return self._evaluator.curves(
        feature_weights, data,
        episodes_eval.evaluation_seed(seed, episodes_eval.BACKDOOR, client))
