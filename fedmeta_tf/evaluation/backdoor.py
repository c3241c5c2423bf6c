"""Backdoor evaluation: main-task, backdoor and meta-test accuracy.

Main paper, Section 3.1 (Attack Evaluation).

One evaluation episode, all in-graph:

1. *Main-task episode*: N classes, K support + Q query examples each (benign
   examples): the target class at a random output slot, N - 1 random
   meta-training classes (the server's, or a client's own). Support examples
   are training examples; queries are the classes' held-out examples
   (Section 3.3 holds out 5 per Omniglot class "for testing"), never an
   example (or an augmented view of one) the clients meta-trained on. In
   case (c) one of the N - 1 is a backdoor class, correctly labelled
   (`backdoor_pool`), at a random slot.
2. The model is loaded with the weights under test and fine-tuned with Adam
   on the N*K support examples (`evaluation/meta_test.py` settings), step by
   step; after every `curve_every` steps (and before the first) it measures:
   - `main_task_accuracy`: accuracy on the N*Q queries, classified as one
     batch (as in meta-testing);
   - `backdoor_train_accuracy` / `backdoor_val_accuracy`: the fraction of the
     keyed backdoor images (the attacker's attack-training set / the unseen
     attack-validation set) predicted as the *target's slot*. Each keyed image
     is classified in a batch made of the episode's N*Q benign queries plus
     that one image, so batch-norm statistics (always batch statistics, see
     `models/conv4.py`) are those of an ordinary query batch and keyed images
     never influence one another;
   - `meta_test_accuracy`: the same fine-tuning on a separate episode of
     meta-test classes (never meta-trained on), accuracy on its queries.
3. Metrics are averaged over `episodes` episodes (papers: 40 or 50).

A model that ignores the key assigns keyed images to one of N slots, so the
backdoor accuracy of an unattacked model is about 1/N (chance) or lower (in
case (c), where the backdoor class itself is in the episode).

The loop is `episodes_eval.make_episodes_fn` (`backdoor_tasks`: the
main-task and the meta-test episode; `DenseLearner`); `defended.py` runs the
same tasks with the local defense's learner. Episodes are pure functions of
`episodes_eval.evaluation_seed(run seed, BACKDOOR, client)`: the same seed
gives the same episodes for every model and learner, so rounds and defenses
are compared on equal footing.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional

import numpy as np
import tensorflow as tf

from fedmeta_tf.data import episodes as episodes_lib
from fedmeta_tf.evaluation import episodes_eval
from fedmeta_tf.evaluation import meta_test as meta_test_lib
from fedmeta_tf.meta import reptile_tf

METRICS = ("main_task_accuracy", "backdoor_train_accuracy",
           "backdoor_val_accuracy", "meta_test_accuracy")
STREAM_MAIN = 11
STREAM_META_TEST = 12


@dataclasses.dataclass(frozen=True)
class BackdoorEvalConfig:
  """How backdoor evaluation episodes are drawn and fine-tuned.

  Attributes:
    episode: ways, shots, queries, fine-tuning steps, batch, learning rate and
      number of episodes (`meta_test.EvalConfig`).
    curve_every: record the metrics every this many fine-tuning steps (and at
      step 0); `None` records only step 0 and the last step.
    backdoor_in_episode: case (c), a correctly labelled backdoor class in the
      episode.
  """

  episode: meta_test_lib.EvalConfig = meta_test_lib.EvalConfig()
  curve_every: Optional[int] = None
  backdoor_in_episode: bool = False

  def __post_init__(self):
    if self.curve_every is not None and self.curve_every <= 0:
      raise ValueError(f"curve_every must be positive, got {self.curve_every}")
    minimum = 3 if self.backdoor_in_episode else 2
    if self.episode.ways < minimum:
      raise ValueError(f"backdoor evaluation needs ways >= {minimum}, got "
                       f"{self.episode.ways}")

  @property
  def schedule(self) -> episodes_eval.Schedule:
    return episodes_eval.Schedule(self.episode.steps, every=self.curve_every)

  @property
  def chunk(self) -> int:
    return self.schedule.chunk

  @property
  def curve_steps(self) -> list[int]:
    """The fine-tuning steps at which metrics are recorded."""
    return self.schedule.points


def _class_examples(support_pool, query_pool, count, shots, queries, seed):
  """uint8 [count, shots + queries, ...]: `count` random classes, their
  support examples from `support_pool` and their queries from `query_pool`
  (the same classes' held-out examples, same class order)."""
  class_seed, support_seed, query_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  classes = episodes_lib.stateless_choice(tf.shape(support_pool)[0], count,
                                          class_seed)

  def pick(pool, per_class, example_seed):
    scores = tf.random.stateless_uniform(
        tf.stack([count, tf.shape(pool)[1]]), seed=example_seed)
    examples = tf.argsort(scores, axis=1)[:, :per_class]
    return tf.gather(tf.gather(pool, classes), examples, batch_dims=1)

  return tf.concat([pick(support_pool, shots, support_seed),
                    pick(query_pool, queries, query_seed)], axis=1)


def _examples_of(images, per_class, seed):
  """uint8 [1, per_class, ...]: examples of one class (cycled if too few)."""
  n = tf.shape(images)[0]
  order = tf.argsort(tf.random.stateless_uniform(tf.reshape(n, [1]), seed=seed))
  return tf.gather(images, tf.gather(order, tf.range(per_class) % n))[None]


def sample_target_episode(data: Mapping[str, tf.Tensor], *, ways: int,
                          shots: int, queries: int, backdoor_in_episode: bool,
                          seed):
  """A main-task episode that contains the target class (`eval_data`).

  Support examples are examples the benign clients meta-trained on; queries
  are examples they never saw (Section 3.3: the held-out examples of each
  meta-training class; for the target, the examples only the attacker
  holds), so main-task accuracy measures generalisation, not memory. In
  case (c) the backdoor class's support and queries are disjoint draws from
  its benign examples: the paper's split leaves no unkeyed example of a
  backdoor class unused.

  Returns:
    (episode, target_slot): `episodes.Episode` and the target's label.
  """
  seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 6))
  per_class = shots + queries
  reserved = [tf.concat([_examples_of(data["target_support"], shots, seeds[0]),
                         _examples_of(data["target_queries"], queries,
                                      seeds[5])], axis=1)]
  if backdoor_in_episode:
    pool = data["backdoor_pool"]
    which = tf.random.stateless_uniform([], seeds[1], 0, tf.shape(pool)[0],
                                        tf.int32)
    reserved.append(_examples_of(pool[which], per_class, seeds[2]))
  others = _class_examples(data["main_support"], data["main_queries"],
                           ways - len(reserved), shots, queries, seeds[3])
  classes = tf.concat(reserved + [others], 0)  # [N, K+Q, H, W, ch]
  order = tf.argsort(tf.random.stateless_uniform([ways], seeds[4]))
  classes = tf.gather(classes, order)  # label = new position
  target_slot = tf.cast(tf.argmin(order), tf.int32)  # where class 0 went
  classes = episodes_lib.to_float_images(classes)
  labels = tf.broadcast_to(tf.range(ways, dtype=tf.int32)[:, None],
                           [ways, per_class])
  image_shape = tf.shape(classes)[2:]

  def flatten(x, count):
    return tf.reshape(x, tf.concat([[ways * count], image_shape], 0))

  episode = episodes_lib.Episode(
      support_images=flatten(classes[:, :shots], shots),
      support_labels=tf.reshape(labels[:, :shots], [-1]),
      query_images=flatten(classes[:, shots:], queries),
      query_labels=tf.reshape(labels[:, shots:], [-1]))
  return episode, target_slot


def target_rate(model, keyed_images, context_images, target_slot):
  """Fraction of keyed images predicted as `target_slot`, each classified in
  a batch with `context_images` (see the module docstring)."""
  keyed = episodes_lib.to_float_images(keyed_images)

  def predict(image):
    batch = tf.concat([context_images, image[None]], 0)
    return tf.argmax(model(batch, training=True)[-1], output_type=tf.int32)

  predictions = tf.map_fn(predict, keyed, fn_output_signature=tf.int32)
  return tf.reduce_mean(tf.cast(tf.equal(predictions, target_slot), tf.float32))


def backdoor_tasks(config: BackdoorEvalConfig) -> episodes_eval.TasksFn:
  """The two tasks of every evaluation episode, on `data` (`eval_data`):

  - stream STREAM_MAIN: `sample_target_episode`; scores main-task accuracy
    and the target rates of `attack_train` and `attack_val`;
  - stream STREAM_META_TEST: `episodes.sample_episode` from
    `meta_test_pool`; scores its accuracy.
  """
  ep = config.episode

  def make_tasks(data):
    def sample_main(seed):
      return sample_target_episode(
          data, ways=ep.ways, shots=ep.shots, queries=ep.queries,
          backdoor_in_episode=config.backdoor_in_episode, seed=seed)

    def score_main(model, episode, context):
      return tf.stack([
          meta_test_lib.accuracy(model, episode.query_images,
                                 episode.query_labels),
          target_rate(model, data["attack_train"], episode.query_images,
                      context),
          target_rate(model, data["attack_val"], episode.query_images,
                      context)])

    def sample_test(seed):
      return episodes_lib.sample_episode(
          data["meta_test_pool"], ways=ep.ways, shots=ep.shots,
          queries=ep.queries, seed=seed), None

    return [episodes_eval.Task((STREAM_MAIN,), sample_main, score_main),
            episodes_eval.Task((STREAM_META_TEST,), sample_test,
                               meta_test_lib.score_accuracy)]

  return make_tasks


def main_task_episode(data: Mapping[str, np.ndarray],
                      config: BackdoorEvalConfig, *, seed: int,
                      client: Optional[int] = None, index: int = 0):
  """(episode, target slot): main-task episode `index` of the evaluation
  `BackdoorEvaluator(..., data=data, seed=seed, client=client)` runs."""
  data = {k: tf.constant(v) for k, v in data.items()}
  main = backdoor_tasks(config)(data)[0]
  return main.sample(episodes_eval.episode_seed(
      episodes_eval.evaluation_seed(seed, episodes_eval.BACKDOOR, client),
      main.stream, index))


class BackdoorEvaluator:
  """Averaged backdoor metrics of given weights on fixed evaluation data."""

  def __init__(self, model_fn, *, config: BackdoorEvalConfig,
               data: Mapping[str, np.ndarray], seed: int,
               client: Optional[int] = None,
               parallelism: Optional[int] = None):
    """`seed`, `client`: the run seed and, for a benign client's own
    evaluation, the client (`episodes_eval.evaluation_seed`).
    `parallelism`: episodes evaluated at once, each chunk of episodes on
    its own model replica (`fedmeta_tf/parallel.py`; default
    `parallel.streams()`); results do not depend on it."""
    self.config = config
    check_eval_data(data, config)

    def make_learner():
      model, optimizer = reptile_tf.make_learner(
          model_fn, config.episode.learning_rate)
      return episodes_eval.DenseLearner(model, optimizer,
                                        batch=config.episode.batch,
                                        steps=config.episode.steps)

    self._evaluator = episodes_eval.EpisodeEvaluator(
        make_learner, schedule=config.schedule,
        make_tasks=backdoor_tasks(config), metrics=METRICS,
        episodes=config.episode.episodes, parallelism=parallelism)
    self.model = self._evaluator.learner.model
    self._data = {k: tf.constant(v) for k, v in data.items()}
    self._seed = episodes_eval.evaluation_seed(seed, episodes_eval.BACKDOOR,
                                               client)

  def curves(self, weights) -> dict[str, np.ndarray]:
    """{metric: mean over episodes, [points]} at `config.curve_steps`."""
    return self._evaluator.curves(weights, self._data, self._seed)

  def __call__(self, weights) -> dict[str, float]:
    """The metrics after the full fine-tuning, averaged over episodes."""
    return {k: float(v[-1]) for k, v in self.curves(weights).items()}


def eval_data(*, main_support, main_queries, target_support, target_queries,
              backdoor_pool, attack_train, attack_val,
              meta_test_pool) -> dict[str, np.ndarray]:
  """The `data` mapping of `backdoor_tasks`, checked.

  Args:
    main_support: uint8 [C, S, ...], training examples of the main-task
      classes (the meta-training classes of the server or of one client).
    main_queries: uint8 [C, H, ...], the same classes' held-out examples.
    target_support / target_queries: target examples the benign clients
      meta-trained on / did not.
    backdoor_pool: [B, S_b, ...] benign examples of the backdoor classes.
    attack_train, attack_val: the keyed images scored.
    meta_test_pool: [C_test, S_test, ...].
  """
  for name, value in (("main_queries (held-out examples)", main_queries),
                      ("target_queries", target_queries),
                      ("attack_train", attack_train),
                      ("attack_val", attack_val)):
    if np.size(value) == 0:
      raise ValueError(f"backdoor evaluation: {name} is empty")
  if np.shape(main_support)[0] != np.shape(main_queries)[0]:
    raise ValueError(f"backdoor evaluation: {np.shape(main_support)[0]} "
                     f"support classes but {np.shape(main_queries)[0]} "
                     "classes of held-out queries")
  return dict(main_support=np.asarray(main_support),
              main_queries=np.asarray(main_queries),
              target_support=np.asarray(target_support),
              target_queries=np.asarray(target_queries),
              backdoor_pool=np.asarray(backdoor_pool),
              attack_train=attack_train, attack_val=attack_val,
              meta_test_pool=np.asarray(meta_test_pool))


def check_eval_data(data: Mapping[str, np.ndarray],
                    config: BackdoorEvalConfig) -> None:
  """ValueError when an episode of `config` cannot be drawn from `data`."""
  ep = config.episode
  held_out = np.shape(data["main_queries"])[1]
  if ep.queries > held_out:
    raise ValueError(
        f"main-task episodes take their {ep.queries} queries per class from "
        f"the {held_out} held-out examples of each meta-training class; "
        f"set --eval_queries <= {held_out}")
  if ep.shots > np.shape(data["main_support"])[1]:
    raise ValueError(f"--eval_shots={ep.shots} exceeds the "
                     f"{np.shape(data['main_support'])[1]} training examples "
                     "per class")
