"""Backdoor evaluation of the local defense, per fine-tuning iteration.

Experiment 3 measures exactly what Experiment 2 measures (SPEC.md §4,
`evaluation/backdoor.py`): main-task accuracy, backdoor accuracy on the
attack-training and attack-validation images, and meta-test accuracy, after
every `curve_every` fine-tuning iterations, averaged over episodes. Only
the fine-tuning differs: Algorithm 2 on a metric head
(`secure_fine_tuning.MetricHeadLearner`) instead of Adam on the dense
layer. The episodes are the same — same seeds, same streams, drawn by
`backdoor.sample_target_episode` — and the metrics are `backdoor`'s own
(`target_rate`, `meta_test.accuracy`), applied to a predictor that
classifies against the episode's support set. So curves with and without
the defense compare models on the same episodes.

Experiment 3(c) (supervised fine-tuning after the Glorot mix) needs nothing
here: it is `backdoor.BackdoorEvaluator` on the mixed weights.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
import tensorflow as tf

from fedmeta_tf.data import episodes as episodes_lib
from fedmeta_tf.defenses.local import secure_fine_tuning
from fedmeta_tf.evaluation import backdoor
from fedmeta_tf.evaluation import meta_test as meta_test_lib
from fedmeta_tf.runtime import parallel


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


def check_configs(defense: secure_fine_tuning.DefenseConfig,
                  evaluation: backdoor.BackdoorEvalConfig) -> None:
  """Raises ValueError when the two configurations disagree."""
  ep = evaluation.episode
  if ep.steps != defense.steps:
    raise ValueError(f"evaluation steps ({ep.steps}) != defense steps "
                     f"({defense.steps})")
  if defense.leave_one_out and ep.shots < 2:
    raise ValueError("leave_one_out needs shots >= 2")


def make_defense_eval_fn(learner: secure_fine_tuning.MetricHeadLearner,
                         config: backdoor.BackdoorEvalConfig):
  """Builds `evaluate(feature_weights, data, seed, episodes=None) ->
  {metric: [episodes, points]}`, the defended counterpart of
  `backdoor.make_backdoor_eval_fn` (same `data`, same seed, same points
  `config.curve_steps`; `episodes` = (start, stop) evaluates only those
  episodes, each a function of `seed` and its index).

  `feature_weights` is theta' restricted to the feature extractor.
  """
  check_configs(learner.config, config)
  ep = config.episode
  points = len(config.curve_steps)
  chunks = points - 1
  chunk = config.chunk
  last_chunk = ep.steps - chunk * (chunks - 1)

  def fine_tune(feature_weights, episode, seed, score_fn):
    learner.start(feature_weights)
    schedule = learner.query_schedule(tf.shape(episode.support_labels)[0],
                                      seed)
    def score():
      return score_fn(_SupportPredictor(learner, episode.support_images,
                                        episode.support_labels))

    rows = tf.TensorArray(tf.float32, size=points)
    rows = rows.write(0, score())
    for i in tf.range(chunks):
      steps = tf.where(i == chunks - 1, last_chunk, chunk)
      for j in tf.range(steps):
        step = i * chunk + j
        learner.step(episode.support_images, episode.support_labels,
                     schedule[step], step)
      rows = rows.write(i + 1, score())
    return rows.stack()

  @tf.function
  def evaluate(feature_weights, data, seed, start, stop):
    per_episode = tf.TensorArray(tf.float32, size=stop - start)
    for i in tf.range(start, stop):
      main_seed = episodes_lib.fold_seed(seed, backdoor.STREAM_MAIN, i)
      episode, slot = backdoor.sample_target_episode(
          data["main_pool"], data["target_images"], data["backdoor_pool"],
          ways=ep.ways, shots=ep.shots, queries=ep.queries,
          backdoor_in_episode=config.backdoor_in_episode, seed=main_seed)

      def score_main(model, episode=episode, slot=slot):
        return tf.stack([
            meta_test_lib.accuracy(model, episode.query_images,
                                   episode.query_labels),
            backdoor.target_rate(model, data["attack_train"],
                                 episode.query_images, slot),
            backdoor.target_rate(model, data["attack_val"],
                                 episode.query_images, slot)])

      main = fine_tune(feature_weights, episode,
                       episodes_lib.fold_seed(main_seed,
                                              episodes_lib.STREAM_MINIBATCH),
                       score_main)
      test_seed = episodes_lib.fold_seed(seed, backdoor.STREAM_META_TEST, i)
      test_episode = episodes_lib.sample_episode(
          data["meta_test_pool"], ways=ep.ways, shots=ep.shots,
          queries=ep.queries, seed=test_seed)

      def score_test(model, test_episode=test_episode):
        return meta_test_lib.accuracy(model, test_episode.query_images,
                                      test_episode.query_labels)[None]

      test = fine_tune(feature_weights, test_episode,
                       episodes_lib.fold_seed(test_seed,
                                              episodes_lib.STREAM_MINIBATCH),
                       score_test)
      per_episode = per_episode.write(i - start, tf.concat([main, test], 1))
    return per_episode.stack()  # [episodes, points, 4]

  def evaluate_dict(feature_weights, data, seed, episodes=None):
    start, stop = (0, ep.episodes) if episodes is None else episodes
    values = evaluate(
        [tf.convert_to_tensor(v, tf.float32) for v in feature_weights],
        {k: tf.convert_to_tensor(v) for k, v in data.items()},
        tf.convert_to_tensor(seed, tf.int64),
        tf.constant(start, tf.int32), tf.constant(stop, tf.int32))
    return {name: values[:, :, k] for k, name in enumerate(backdoor.METRICS)}

  return evaluate_dict


class DefenseEvaluator:
  """Averaged backdoor metrics of the defense started from given theta'.

  Mirrors `backdoor.BackdoorEvaluator`; one instance (one traced function
  per replica) serves every client and delta.
  """

  def __init__(self, *, image_shape, config: backdoor.BackdoorEvalConfig,
               defense: secure_fine_tuning.DefenseConfig,
               variant: str = "maxpool", filters: int = 64,
               parallelism: Optional[int] = None):
    """`parallelism`: episodes evaluated at once, each chunk of episodes on
    its own learner (`runtime/parallel.py`; default `parallel.streams()`);
    results do not depend on it."""
    self.config = config

    def make_replica():
      learner = secure_fine_tuning.MetricHeadLearner(
          image_shape=image_shape, ways=config.episode.ways, config=defense,
          variant=variant, filters=filters)
      return learner, make_defense_eval_fn(learner, config)

    self._replicas = parallel.ReplicaPool(make_replica,
                                         parallelism or parallel.streams())
    self.learner = self._replicas.replicas[0][0]

  def curves(self, feature_weights, *, data: Mapping[str, np.ndarray],
             seed: int) -> dict[str, np.ndarray]:
    """{metric: mean over episodes, [points]} at `config.curve_steps`, on
    `data` (`backdoor.eval_data`) with the episodes of
    `backdoor.BackdoorEvaluator(..., data=data, seed=seed)`."""
    data = {k: tf.constant(v) for k, v in data.items()}
    return backdoor.mean_over_episodes(self._replicas.map_chunks(
        lambda replica, chunk: replica[1](feature_weights, data, [seed, 0xBD],
                                          chunk), self.config.episode.episodes))
