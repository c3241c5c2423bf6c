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


def _algorithm_1_by_hand(config, episode_fn, seed, initial, *,
                         fresh_adam_per_episode):
  """u_i of Algorithm 1 replayed step by step with a Keras model and Adam:
  moments carried across episodes (sequential), or reset before each
  (what the batched meta-batch does)."""
  model, optimizer = _setup(config)
  reptile_tf.reset_optimizer(optimizer)
  theta = list(initial)
  for it in range(config.iterations):
    trained = []
    for j in range(config.meta_batch):
      index = it * config.meta_batch + j
      episode = episode_fn(episodes.fold_seed(seed, index))
      w.assign(model.trainable_variables, theta)
      if fresh_adam_per_episode:
        reptile_tf.reset_optimizer(optimizer)
      reptile_tf.train_steps(
          model, optimizer, episode.support_images, episode.support_labels,
          steps=config.inner_steps, batch_size=config.inner_batch,
          seed=episodes.fold_seed(seed, index, episodes.STREAM_MINIBATCH))
      trained.append(w.read(model.trainable_variables))
    theta = [(1 - config.outer_lr) * t + config.outer_lr * m
             for t, m in zip(theta, w.average(trained))]
  return w.subtract(theta, initial)


def _client_update(config, episode_fn, seed, initial):
  model, optimizer = _setup(config)
  return tf.function(
      lambda: reptile_tf.reptile_client_update(
          model, optimizer, initial, config=config,
          plan=reptile_tf.ReptilePlan(episode_fn=episode_fn, seed=seed)))()


@pytest.mark.parametrize("mode", ["sequential", "batched"])
def test_client_update_follows_algorithm_1(mode):
  """Replays Algorithm 1 by hand, step by step, and compares; the batched
  meta-batch is the same but for a fresh Adam per episode."""
  config = reptile_tf.ReptileConfig(ways=3, shots=2, iterations=2,
                                    meta_batch=2, inner_steps=2,
                                    inner_batch=4, inner_lr=0.01,
                                    outer_lr=0.3, meta_batch_mode=mode)
  pool = tf.constant(tiny_pool(num_classes=6, examples=4).images)
  seed = episodes.fold_seed(11, 0)
  initial = w.read(_setup(config)[0].trainable_variables)
  episode_fn = reptile_tf.pool_episode_fn(pool, config)
  update, loss = _client_update(config, episode_fn, seed, initial)
  assert np.isfinite(float(loss))
  batched = config.meta_batch_mode is reptile_tf.MetaBatchMode.BATCHED
  for fresh in (False, True):
    expected = _algorithm_1_by_hand(config, episode_fn, seed, initial,
                                    fresh_adam_per_episode=fresh)
    gap = max(np.abs(g - e).max() for g, e in zip(update, expected))
    if fresh == batched:
      assert gap < (2e-5 if batched else 1e-6)
    else:  # the two modes are different algorithms
      assert gap > 1e-3
  assert max(float(tf.reduce_max(tf.abs(u))) for u in update) > 0


def test_batched_iterations_in_chunks_equal_one_call():
  config = reptile_tf.ReptileConfig(ways=3, shots=2, iterations=3,
                                    meta_batch=2, inner_steps=2,
                                    inner_batch=4, inner_lr=0.01,
                                    outer_lr=0.3, meta_batch_mode="batched")
  pool = tf.constant(tiny_pool(num_classes=6, examples=4).images)
  plan = reptile_tf.ReptilePlan(
      episode_fn=reptile_tf.pool_episode_fn(pool, config), seed=[3, 4])
  model, optimizer = _setup(config)
  initial = w.read(model.trainable_variables)
  run = tf.function(lambda theta, loss, start, stop:
                    reptile_tf.reptile_iterations(
                        model, optimizer, theta, loss, plan=plan,
                        config=config, start=start, stop=stop))
  whole, whole_loss = run(initial, tf.constant(0.0), 0, 3)
  theta, loss = run(initial, tf.constant(0.0), 0, 1)
  theta, loss = run(theta, loss, 1, 3)
  for a, b in zip(whole, theta):
    np.testing.assert_allclose(a, b, atol=1e-6)
  np.testing.assert_allclose(whole_loss, loss, rtol=1e-5)


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
                                         ("inner_lr", 0.0), ("outer_lr", 1.5),
                                         ("meta_batch_mode", "parallel")])
def test_config_validation(field, value):
  with pytest.raises(ValueError, match=field):
    reptile_tf.ReptileConfig(**{field: value})
