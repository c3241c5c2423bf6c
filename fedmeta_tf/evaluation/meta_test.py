"""Meta-test evaluation: fine-tune on an episode's support set, score its queries.

SPEC.md §2 (FLClientFineTuning): episodes of N unseen classes with K + Q
examples each; the global model is fine-tuned for e Adam steps on the N*K
support examples and scored on the N*Q queries; accuracy is averaged over
many episodes (the papers: 40 or 50).

Queries are classified as one batch, so batch norm sees the query batch
(the transductive setting of MAML and Reptile; see `models/conv4.py`).
`fine_tune_curve` also records accuracy after every fine-tuning step, which
the attack and defense experiments plot.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from fedmeta_tf.data import episodes as episodes_lib
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import weights as w


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """How meta-test episodes are drawn and fine-tuned.

  Attributes:
    ways: N.
    shots: K support examples per class.
    queries: Q query examples per class (SPEC.md: 1).
    steps: e (test), fine-tuning Adam steps per episode.
    batch: b, fine-tuning mini-batch size.
    learning_rate: eta.
    episodes: how many episodes the accuracy is averaged over.
  """

  ways: int = 5
  shots: int = 5
  queries: int = 1
  steps: int = 50
  batch: int = 10
  learning_rate: float = 0.001
  episodes: int = 40

  def __post_init__(self):
    for name in ("ways", "shots", "queries", "steps", "batch", "episodes"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if not self.learning_rate > 0:
      raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")


def accuracy(model: tf.keras.Model, images, labels) -> tf.Tensor:
  logits = model(images, training=True)
  predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
  return tf.reduce_mean(tf.cast(tf.equal(predictions, labels), tf.float32))


def fine_tune_and_score(model, optimizer, weights: w.Weights,
                        episode: episodes_lib.Episode, *, config: EvalConfig,
                        seed) -> tf.Tensor:
  """Loads `weights`, fine-tunes on the support set, returns query accuracy."""
  w.assign(model.trainable_variables, weights)
  reptile_tf.reset_optimizer(optimizer)
  reptile_tf.train_steps(model, optimizer, episode.support_images,
                         episode.support_labels, steps=config.steps,
                         batch_size=config.batch, seed=seed)
  return accuracy(model, episode.query_images, episode.query_labels)


def make_meta_test_fn(model: tf.keras.Model, optimizer, config: EvalConfig):
  """Builds `meta_test(weights, pool, seed, start=0, stop=E) -> accuracies
  [stop - start]` of episodes start..stop-1 (of E = `config.episodes`; each
  a function of `seed` and its index, so chunks run apart equal one run).

  The model's weights are restored to `weights` when it returns.
  """

  @tf.function
  def episodes_range(weights, pool, seed, start, stop):
    accuracies = tf.TensorArray(tf.float32, size=stop - start)
    for i in tf.range(start, stop):
      episode_seed = episodes_lib.fold_seed(seed, i)
      episode = episodes_lib.sample_episode(
          pool, ways=config.ways, shots=config.shots, queries=config.queries,
          seed=episode_seed)
      accuracies = accuracies.write(i - start, fine_tune_and_score(
          model, optimizer, weights, episode, config=config,
          seed=episodes_lib.fold_seed(episode_seed,
                                      episodes_lib.STREAM_MINIBATCH)))
    w.assign(model.trainable_variables, weights)
    return accuracies.stack()

  def meta_test(weights, pool, seed, start=0, stop=config.episodes):
    return episodes_range(weights, pool, seed, tf.constant(start, tf.int32),
                          tf.constant(stop, tf.int32))

  return meta_test
