"""Tests for the Reptile math (fedmeta_tf.meta.{weights,reptile_tf,server_tf})."""

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.data import episodes
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import server_tf
from fedmeta_tf.meta import weights as w
from fedmeta_tf.models import conv4
from tests.conftest import tiny_pool


def test_vector_functions_by_hand():
  a, b = [tf.constant([0.0, 2.0])], [tf.constant([4.0, 6.0])]
  np.testing.assert_allclose(w.interpolate(a, b, 0.25)[0], [1.0, 3.0])
  np.testing.assert_allclose(w.average([a, b])[0], [2.0, 4.0])
  np.testing.assert_allclose(w.subtract(b, a)[0], [4.0, 4.0])
  np.testing.assert_allclose(w.scale(b, 0.5)[0], [2.0, 3.0])


def test_server_update_zero_weights_plus_ones():
  state = server_tf.ServerState(weights=[tf.zeros([2, 3]), tf.zeros([4])],
                                round_num=tf.constant(7, tf.int64))
  new = server_tf.server_update(state, [tf.ones([2, 3]), tf.ones([4])])
  np.testing.assert_array_equal(new.weights[0], np.ones([2, 3]))
  assert int(new.round_num) == 8


def test_minibatches_cycle_through_shuffled_epochs():
  idx = reptile_tf.minibatch_indices(6, 4, 3, [0, 1]).numpy()
  assert idx.shape == (3, 4)
  flat = idx.reshape(-1)
  assert sorted(flat[:6]) == list(range(6))  # first epoch: each once


def _setup(config):
  model = conv4.build_conv4((28, 28, 1), config.ways, filters=4, seed=0)
  optimizer = reptile_tf.make_inner_optimizer(config.inner_lr)
  reptile_tf.build_optimizer(optimizer, model)
  return model, optimizer


def test_client_update_follows_algorithm_1():
  """Replays Algorithm 1 by hand, step by step, and compares."""
  config = reptile_tf.ReptileConfig(ways=3, shots=2, iterations=2,
                                    meta_batch=2, inner_steps=2,
                                    inner_batch=4, inner_lr=0.01,
                                    outer_lr=0.3)
  pool = tf.constant(tiny_pool(num_classes=6, examples=4).images)
  seed = episodes.fold_seed(11, 0)
  model, optimizer = _setup(config)
  initial = w.read(model.trainable_variables)
  episode_fn = reptile_tf.pool_episode_fn(pool, config)
  update, loss = tf.function(
      lambda: reptile_tf.reptile_client_update(
          model, optimizer, initial, config=config,
          plan=reptile_tf.ReptilePlan(episode_fn=episode_fn, seed=seed)))()
  assert np.isfinite(float(loss))

  model2, optimizer2 = _setup(config)
  reptile_tf.reset_optimizer(optimizer2)
  theta = list(initial)
  for it in range(config.iterations):
    trained = []
    for j in range(config.meta_batch):
      index = it * config.meta_batch + j
      episode = episode_fn(episodes.fold_seed(seed, index))
      w.assign(model2.trainable_variables, theta)
      reptile_tf.train_steps(
          model2, optimizer2, episode.support_images, episode.support_labels,
          steps=config.inner_steps, batch_size=config.inner_batch,
          seed=episodes.fold_seed(seed, index, episodes.STREAM_MINIBATCH))
      trained.append(w.read(model2.trainable_variables))
    theta = [(1 - config.outer_lr) * t + config.outer_lr * m
             for t, m in zip(theta, w.average(trained))]
  expected = w.subtract(theta, initial)
  for got, want in zip(update, expected):
    np.testing.assert_allclose(got, want, atol=1e-6)
  assert max(float(tf.reduce_max(tf.abs(u))) for u in update) > 0


def test_select_clients_is_seeded_and_valid():
  a = server_tf.select_clients(seed=1, round_num=4, num_clients=10,
                               clients_per_round=5, min_updates=3)
  assert a == server_tf.select_clients(seed=1, round_num=4, num_clients=10,
                                       clients_per_round=5, min_updates=3)
  assert len(set(a)) == 3 and all(0 <= c < 10 for c in a)
  rounds = {tuple(server_tf.select_clients(
      seed=1, round_num=r, num_clients=10, clients_per_round=5,
      min_updates=3)) for r in range(20)}
  assert len(rounds) > 10
  with pytest.raises(ValueError, match="min_updates"):
    server_tf.select_clients(seed=1, round_num=0, num_clients=4,
                             clients_per_round=5, min_updates=3)


@pytest.mark.parametrize("field,value", [("ways", 1), ("inner_steps", 0),
                                         ("inner_lr", 0.0), ("outer_lr", 1.5)])
def test_config_validation(field, value):
  with pytest.raises(ValueError, match=field):
    reptile_tf.ReptileConfig(**{field: value})
