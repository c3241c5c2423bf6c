"""N-way K-shot episodes, sampled in-graph as pure functions of a seed.

Every random choice in the project that concerns data goes through
`episode_seed(run_seed, round, client, episode)`: the same four integers give
the same episode in the TFF runtime, in the in-process driver, on CPU or GPU,
and in a resumed run (STYLE.md, "Randomness"). Sampling uses TensorFlow's
stateless random ops, so it runs inside the client's tf.function with no
Python call per episode.

A class pool tensor is `images[C, S, H, W, ch]` uint8; an episode draws N of
the C classes and, per class, K support and Q query examples without
replacement. Labels are the class's position in the episode (0..N-1).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

# Domain separators for the seed tree, so that e.g. client sampling and
# episode sampling never share a stream.
STREAM_TRAIN = 1
STREAM_EVAL = 2
STREAM_CLIENT_SELECTION = 3
STREAM_MINIBATCH = 4


class Episode(NamedTuple):
  support_images: tf.Tensor  # float32 [N*K, H, W, ch] in [0, 1]
  support_labels: tf.Tensor  # int32 [N*K]
  query_images: tf.Tensor  # float32 [N*Q, H, W, ch]
  query_labels: tf.Tensor  # int32 [N*Q]


def fold_seed(seed, *values) -> tf.Tensor:
  """Folds integers into a stateless seed: a shape [2] int64 tensor.

  Args:
    seed: an int or a shape [2] seed tensor.
    *values: integers or scalar tensors (round, client, episode, ...).
  """
  seed = tf.convert_to_tensor(seed)
  if seed.shape.rank == 0:
    seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
  seed = tf.cast(seed, tf.int64)
  for value in values:
    seed = tf.random.experimental.stateless_fold_in(
        seed, tf.cast(value, tf.int64))
  return seed


def episode_seed(run_seed, stream, round_num, client, episode) -> tf.Tensor:
  """The seed of one episode: a pure function of its coordinates."""
  return fold_seed(run_seed, stream, round_num, client, episode)


def stateless_choice(num_items, count, seed) -> tf.Tensor:
  """`count` distinct indices out of range(num_items), uniformly, stateless."""
  scores = tf.random.stateless_uniform([num_items], seed=seed)
  return tf.argsort(scores)[:count]


def to_float_images(images: tf.Tensor) -> tf.Tensor:
  """uint8 images -> float32 in [0, 1]."""
  return tf.cast(images, tf.float32) / 255.0


def sample_episode(pool: tf.Tensor, *, ways: int, shots: int, queries: int,
                   seed) -> Episode:
  """Samples an N-way episode with K support and Q query examples per class.

  Args:
    pool: uint8 [C, S, H, W, ch] class pool (C >= ways, S >= shots + queries).
    ways: N.
    shots: K.
    queries: Q (may be 0).
    seed: shape [2] stateless seed.

  Returns:
    An `Episode`; examples are ordered class by class.
  """
  seed = tf.convert_to_tensor(seed)
  class_seed, example_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2))
  num_classes = tf.shape(pool)[0]
  num_examples = tf.shape(pool)[1]
  classes = stateless_choice(num_classes, ways, class_seed)
  # Independent example draws per class: argsort of uniform scores per row.
  scores = tf.random.stateless_uniform(
      tf.stack([ways, num_examples]), seed=example_seed)
  examples = tf.argsort(scores, axis=1)[:, :shots + queries]  # [N, K+Q]
  picked = tf.gather(tf.gather(pool, classes), examples, batch_dims=1)
  picked = to_float_images(picked)  # [N, K+Q, H, W, ch]
  labels = tf.broadcast_to(tf.range(ways, dtype=tf.int32)[:, None],
                           [ways, shots + queries])
  image_shape = tf.shape(pool)[2:]

  def flatten(x, count):
    return tf.reshape(x, tf.concat([[ways * count], image_shape], 0))

  return Episode(
      support_images=flatten(picked[:, :shots], shots),
      support_labels=tf.reshape(labels[:, :shots], [-1]),
      query_images=flatten(picked[:, shots:], queries),
      query_labels=tf.reshape(labels[:, shots:], [-1]),
  )
