"""Federated Reptile client work in pure TensorFlow (main paper, Algorithm 1).

One call of `reptile_client_update` is the whole local work of one client in
one round, in-graph (no Python call per SGD step):

    theta_i <- theta_G
    repeat E times:                                   # `iterations`
      for j = 1..B:                                   # `meta_batch`
        sample a K-shot N-way episode from the client's own classes
        theta_i^j <- theta_i; e Adam steps on mini-batches of size b
      theta_i <- (1 - eps) theta_i + (eps / B) sum_j theta_i^j
    return u_i = theta_i - theta_G

Adam uses beta1 = 0 (Section 3.3). Its second-moment state lives for one
client-round: it is reset when the client starts (clients are stateless
between rounds) and carried across that client's episodes, as in
supervised-reptile, where one optimizer serves every task.

`meta_batch_mode="batched"` is a documented alternative (issue #20, item 3):
the B episodes of an outer iteration train as one computation
(`stacked_conv4`), each from theta_i with a fresh Adam, so no moments carry
between episodes; same episodes, mini-batches and interpolation
(docs/results/performance.md compares the two for speed and accuracy).

Functions here take the Keras model and optimizer as arguments; they are
created by the caller outside any tf.function (TFF prunes variable side
effects otherwise, and Keras forbids creating variables in a traced loop).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Callable, Optional

import tensorflow as tf

from fedmeta_tf import enums
from fedmeta_tf.data import episodes as episodes_lib
from fedmeta_tf.meta import weights as w
from fedmeta_tf.models import stacked_conv4


class MetaBatchMode(enum.Enum):
  """How the B episodes of an outer iteration are trained (module docstring)."""
  SEQUENTIAL = "sequential"  # one after another, Adam's moments carried
  BATCHED = "batched"  # as one computation, a fresh Adam per episode


@dataclasses.dataclass(frozen=True)
class ReptileConfig:
  """Hyperparameters of the Reptile client work (Alg. 1; Section 3.3).

  Attributes:
    ways: N, classes per episode.
    shots: K, examples per class in a training episode.
    iterations: E, outer iterations per client and round.
    meta_batch: B, episodes per outer iteration.
    inner_steps: e, Adam steps per episode.
    inner_batch: b, mini-batch size of an Adam step.
    inner_lr: eta, Adam learning rate.
    outer_lr: eps, interpolation step toward the episodes' mean.
    meta_batch_mode: `MetaBatchMode` (or its value): the B episodes one
      after another with Adam's moments carried (Algorithm 1 as in
      supervised-reptile), or batched into one computation.
  """

  ways: int = 5
  shots: int = 10
  iterations: int = 1000
  meta_batch: int = 5
  inner_steps: int = 10
  inner_batch: int = 10
  inner_lr: float = 0.001
  outer_lr: float = 0.1
  meta_batch_mode: MetaBatchMode = MetaBatchMode.SEQUENTIAL

  def __post_init__(self):
    try:
      mode = enums.parse_enum(MetaBatchMode, self.meta_batch_mode,
                              "meta-batch mode")
    except ValueError as e:
      raise ValueError(f"meta_batch_mode: {e}") from None
    object.__setattr__(self, "meta_batch_mode", mode)
    for name in ("ways", "shots", "iterations", "meta_batch", "inner_steps",
                 "inner_batch"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if self.ways < 2:
      raise ValueError(f"ways (N) must be >= 2, got {self.ways}")
    if not self.inner_lr > 0:
      raise ValueError(f"inner_lr must be positive, got {self.inner_lr}")
    if not 0 < self.outer_lr <= 1:
      raise ValueError(f"outer_lr (epsilon) must be in (0, 1], got {self.outer_lr}")


def make_inner_optimizer(learning_rate: float) -> tf.keras.optimizers.Optimizer:
  """Adam with beta1 = 0 (main paper, Section 3.3)."""
  return tf.keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.0,
                                  beta_2=0.999)


def build_optimizer(optimizer: tf.keras.optimizers.Optimizer,
                    model: tf.keras.Model) -> None:
  """Creates the optimizer's slot variables (must happen outside tf.function)."""
  optimizer.build(model.trainable_variables)


def make_learner(model_fn: Callable[[], tf.keras.Model], learning_rate: float
                 ) -> tuple[tf.keras.Model, tf.keras.optimizers.Optimizer]:
  """A fresh model and its inner optimizer, built (slot variables created):
  what one inner loop (a client update, a fine-tuning episode) trains with.
  Called once per parallel stream, outside any tf.function."""
  model = model_fn()
  optimizer = make_inner_optimizer(learning_rate)
  build_optimizer(optimizer, model)
  return model, optimizer


def reset_optimizer(optimizer: tf.keras.optimizers.Optimizer) -> None:
  """Zeroes the optimizer's step counter and moments."""
  for var in optimizer.variables:
    var.assign(tf.zeros_like(var))


def minibatch_indices(num_examples, batch_size: int, steps,
                      seed) -> tf.Tensor:
  """Indices of `steps` mini-batches cycling through shuffled epochs.

  Like supervised-reptile's `_mini_batches`: walk through a shuffled copy of
  the examples, reshuffle when exhausted. Returns int32 [steps, batch_size].
  """
  total = steps * batch_size
  epochs = total // num_examples + 1
  scores = tf.random.stateless_uniform(tf.stack([epochs, num_examples]),
                                       seed=seed)
  stream = tf.reshape(tf.argsort(scores, axis=1), [-1])[:total]
  return tf.reshape(stream, tf.stack([steps, batch_size]))


def sparse_ce(labels, logits) -> tf.Tensor:
  return tf.reduce_mean(
      tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                     logits=logits))


def train_steps(model: tf.keras.Model, optimizer, images, labels, *, steps,
                batch_size: int, seed, variables=None,
                batches=None) -> tf.Tensor:
  """`steps` optimizer steps on mini-batches drawn from (images, labels).

  Args:
    variables: the variables to train; defaults to all trainable ones.
    batches: int32 [steps, b] example indices of each step; default
      `minibatch_indices` (shuffled epochs).

  Returns:
    The loss of the last step.
  """
  variables = model.trainable_variables if variables is None else variables
  if batches is None:
    num_examples = tf.shape(images)[0]
    batch_size = tf.minimum(batch_size, num_examples)
    batches = minibatch_indices(num_examples, batch_size, steps, seed)
  loss = tf.constant(0.0)
  for step in tf.range(steps):
    idx = batches[step]
    with tf.GradientTape() as tape:
      logits = model(tf.gather(images, idx), training=True)
      loss = sparse_ce(tf.gather(labels, idx), logits)
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(grads, variables))
  return loss


EpisodeFn = Callable[[tf.Tensor], episodes_lib.Episode]


# (episode, steps, batch size, seed) -> int32 [steps, b] support indices.
BatchesFn = Callable[[episodes_lib.Episode, tf.Tensor, int, tf.Tensor],
                     tf.Tensor]


def shuffled_batches(episode: episodes_lib.Episode, steps, batch_size: int,
                     seed) -> tf.Tensor:
  """Algorithm 1's mini-batches: shuffled epochs over the support set."""
  num_examples = tf.shape(episode.support_labels)[0]
  return minibatch_indices(num_examples, tf.minimum(batch_size, num_examples),
                           steps, seed)


@dataclasses.dataclass(frozen=True)
class ReptilePlan:
  """What one client's Reptile work is in one round (tensors are fine).

  Attributes:
    episode_fn: episode seed -> one training episode of the client's data.
    seed: this client-round's seed.
    iterations: E; None: `ReptileConfig.iterations` (an attacker's longer
      schedule is a tensor from its client data).
    inner_steps: e; None: `ReptileConfig.inner_steps`.
    learning_rate: eta; None: `ReptileConfig.inner_lr` (the attacker's own).
    batches_fn: orders each episode's inner mini-batches.
  """

  episode_fn: EpisodeFn
  seed: Any
  iterations: Optional[Any] = None
  inner_steps: Optional[Any] = None
  learning_rate: Optional[Any] = None
  batches_fn: BatchesFn = shuffled_batches


def _episode_and_batches(plan: ReptilePlan, config: ReptileConfig,
                         inner_steps, episode_index):
  """Episode `episode_index` of the client-round and its inner mini-batches
  (int32 [e, b]), each seeded by the episode's index."""
  episode = plan.episode_fn(episodes_lib.fold_seed(plan.seed, episode_index))
  batches = plan.batches_fn(
      episode, inner_steps, config.inner_batch,
      episodes_lib.fold_seed(plan.seed, episode_index,
                             episodes_lib.STREAM_MINIBATCH))
  return episode, batches


def reptile_iterations(model: tf.keras.Model, optimizer, theta: w.Weights,
                       loss_sum, *, plan: ReptilePlan, config: ReptileConfig,
                       start, stop) -> tuple[w.Weights, tf.Tensor]:
  """Outer iterations start..stop-1 of Algorithm 1's client loop.

  `theta` is theta_i after iteration start - 1 (theta_G when start is 0);
  `loss_sum` the sum of the episodes' last losses so far. Returns both after
  iteration stop - 1. Episode seeds are functions of the iteration, and the
  optimizer's state carries over between calls, so running [0, E) in
  chunks gives the one-call result (`reptile_client_update`).
  """
  variables = model.trainable_variables
  inner_steps = (config.inner_steps if plan.inner_steps is None
                 else plan.inner_steps)
  learning_rate = (config.inner_lr if plan.learning_rate is None
                   else plan.learning_rate)
  if config.meta_batch_mode is MetaBatchMode.BATCHED:
    return _batched_iterations(
        _float32_variant(model), theta, loss_sum, plan=plan,
        config=config, inner_steps=inner_steps, learning_rate=learning_rate,
        start=start, stop=stop)
  optimizer.learning_rate = learning_rate
  theta = list(theta)
  for it in tf.range(start, stop):
    episode_sum = w.zeros_like(theta)
    for j in tf.range(config.meta_batch):
      episode, batches = _episode_and_batches(
          plan, config, inner_steps, it * config.meta_batch + j)
      w.assign(variables, theta)
      loss_sum += train_steps(
          model, optimizer, episode.support_images, episode.support_labels,
          steps=inner_steps, batch_size=config.inner_batch, seed=None,
          batches=batches)
      episode_sum = w.add(episode_sum, w.read(variables))
    theta = w.interpolate(theta, w.scale(episode_sum, 1.0 / config.meta_batch),
                          config.outer_lr)
  return theta, loss_sum


def _float32_variant(model: tf.keras.Model):
  """The Conv4 variant of `model`, which the batched meta-batch trains in
  float32 only (`--precision=mixed_bfloat16` with it is refused)."""
  variant, dtype = stacked_conv4.stackable(model)
  if dtype != tf.float32:
    raise ValueError(f"the batched meta-batch is float32 only; the model "
                     f"computes in {dtype.name} (use --precision=float32)")
  return variant


def _batched_iterations(variant, theta: w.Weights, loss_sum, *,
                        plan: ReptilePlan, config: ReptileConfig, inner_steps,
                        learning_rate, start, stop):
  """`reptile_iterations` with `MetaBatchMode.BATCHED`: the B episodes of an
  iteration (the same episodes and mini-batches as the sequential form) are
  trained from theta as B stacked Conv4 models in one computation, each
  with a fresh Adam; theta moves toward their mean as in Algorithm 1. No
  state outlives an iteration, so chunks compose trivially."""
  theta = list(theta)
  for it in tf.range(start, stop):
    images, labels, batches = [], [], []
    for j in range(config.meta_batch):
      episode, episode_batches = _episode_and_batches(
          plan, config, inner_steps, it * config.meta_batch + j)
      images.append(episode.support_images)
      labels.append(episode.support_labels)
      batches.append(episode_batches)
    trained, last_losses = stacked_conv4.train_steps(
        stacked_conv4.repeat(theta, config.meta_batch), tf.stack(images),
        tf.stack(labels), tf.stack(batches), learning_rate=learning_rate,
        variant=variant)
    loss_sum += tf.reduce_sum(last_losses)
    theta = w.interpolate(theta, [tf.reduce_mean(v, axis=0) for v in trained],
                          config.outer_lr)
  return theta, loss_sum


def total_iterations(plan: ReptilePlan, config: ReptileConfig):
  return config.iterations if plan.iterations is None else plan.iterations


def finish_client(initial_weights: w.Weights, theta: w.Weights, loss_sum, *,
                  plan: ReptilePlan, config: ReptileConfig):
  """(u_i = theta_i - theta_G, mean last loss over the client's episodes)."""
  num_episodes = tf.cast(total_iterations(plan, config) * config.meta_batch,
                         tf.float32)
  return w.subtract(theta, initial_weights), loss_sum / num_episodes


def reptile_client_update(model: tf.keras.Model, optimizer,
                          initial_weights: w.Weights, *, plan: ReptilePlan,
                          config: ReptileConfig):
  """Runs Algorithm 1's client work; returns (update u_i, mean last loss).

  Call inside a tf.function; `plan` says what this client does this round
  (its episodes, seed, E, e, eta and mini-batch order). The learning rate
  is set on the optimizer for this client update, since one optimizer
  serves every client of a driver stream. The in-process driver runs the
  same work in chunks of outer iterations instead (`reset_optimizer`,
  `reptile_iterations`, `finish_client`; `runtime/inprocess.py`).
  """
  reset_optimizer(optimizer)  # clients are stateless between rounds
  theta, loss_sum = reptile_iterations(
      model, optimizer, list(initial_weights), tf.constant(0.0), plan=plan,
      config=config, start=0, stop=total_iterations(plan, config))
  return finish_client(initial_weights, theta, loss_sum, plan=plan,
                       config=config)


def pool_episode_fn(pool: tf.Tensor, config: ReptileConfig) -> EpisodeFn:
  """Benign training episodes: K-shot N-way from the client's class pool."""

  def episode_fn(seed):
    return episodes_lib.sample_episode(pool, ways=config.ways,
                                       shots=config.shots, queries=0,
                                       seed=seed)

  return episode_fn
