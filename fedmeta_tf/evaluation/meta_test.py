"""Meta-test evaluation: fine-tune on an episode's support set, score queries.

Algorithm 1's FLClientFineTuning (main paper, Section 2.1): episodes of N
unseen classes with K + Q examples each; the global model is fine-tuned for
e Adam steps on the N*K support examples and scored on the N*Q queries;
accuracy is averaged over many episodes (the papers: 40 or 50).

Queries are classified as one batch, so batch norm sees the query batch
(the transductive setting of MAML and Reptile; see `models/conv4.py`).
The loop is `episodes_eval.make_episodes_fn` with one task (a meta-test
episode, scored once after the fine-tuning) and `episodes_eval.DenseLearner`;
the backdoor curves (`backdoor.py`) score the same way after every chunk.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from fedmeta_tf.data import episodes as episodes_lib
from fedmeta_tf.evaluation import episodes_eval


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """How meta-test episodes are drawn and fine-tuned.

  Attributes:
    ways: N.
    shots: K support examples per class.
    queries: Q query examples per class (the papers: 1).
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
      raise ValueError(f"learning_rate must be positive, got "
                       f"{self.learning_rate}")


def accuracy(model: tf.keras.Model, images, labels) -> tf.Tensor:
  logits = model(images, training=True)
  predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
  return tf.reduce_mean(tf.cast(tf.equal(predictions, labels), tf.float32))


def score_accuracy(model, episode: episodes_lib.Episode,
                   context=None) -> tf.Tensor:
  """float32 [1]: query accuracy (an `episodes_eval.Task` score)."""
  del context
  return accuracy(model, episode.query_images, episode.query_labels)[None]


def meta_test_tasks(config: EvalConfig) -> episodes_eval.TasksFn:
  """One task: episode i drawn from `data["pool"]` with seed fold(seed, i)."""

  def make_tasks(data):
    def sample(seed):
      return episodes_lib.sample_episode(
          data["pool"], ways=config.ways, shots=config.shots,
          queries=config.queries, seed=seed), None

    return [episodes_eval.Task((), sample, score_accuracy)]

  return make_tasks


def make_meta_test_fn(model: tf.keras.Model, optimizer, config: EvalConfig):
  """Builds `meta_test(weights, pool, seed, start=0, stop=E) -> accuracies
  [stop - start]` of episodes start..stop-1 (of E = `config.episodes`; each
  a function of `seed` and its index, so chunks run apart equal one run).

  The model's weights are restored to `weights` when it returns.
  """
  evaluate = episodes_eval.make_episodes_fn(
      episodes_eval.DenseLearner(model, optimizer, batch=config.batch,
                                 steps=config.steps),
      episodes_eval.Schedule(config.steps, at_start=False),
      meta_test_tasks(config), metrics=("accuracy",))

  def meta_test(weights, pool, seed, start=0, stop=config.episodes):
    return evaluate(weights, {"pool": pool}, seed,
                    (start, stop))["accuracy"][:, 0]

  return meta_test
