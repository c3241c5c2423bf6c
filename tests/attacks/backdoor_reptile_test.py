"""Tests for fedmeta_tf.attacks.backdoor_reptile."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.attacks import backdoor_reptile as br
from fedmeta_tf.data import episodes
from fedmeta_tf.meta import client_work
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.models import conv4
from tests.conftest import tiny_pool


def _images(value, n):
  return np.full([n, 28, 28, 1], value, np.uint8)


def test_poison_counts_follow_the_ratio():
  assert br.AttackerConfig(backdoor_ratio=(2, 3)).poison_counts(10) == (4, 6)
  assert br.AttackerConfig(backdoor_ratio=(1, 2)).poison_counts(15) == (5, 10)
  assert br.AttackerConfig(backdoor_ratio=(1, 0)).poison_counts(5) == (5, 0)
  assert br.parse_ratio("5:12") == (5, 12)
  with pytest.raises(ValueError, match="backdoor:target"):
    br.parse_ratio("2-3")


@pytest.mark.parametrize("slot", [2, br.RANDOM_SLOT])
def test_poisoned_episode_composition(slot):
  pool = tiny_pool(num_classes=6, examples=12).images
  target, keyed = _images(7, 10), _images(250, 20)
  episode = br.sample_poisoned_episode(
      pool, target, keyed, ways=5, shots=10, num_backdoor=4, slot=slot,
      seed=tf.constant([1, 2], tf.int64))
  images = episode.support_images.numpy()
  labels = episode.support_labels.numpy()
  assert images.shape == (50, 28, 28, 1)
  assert sorted(np.bincount(labels)) == [10] * 5
  slot_label = labels[-1]
  if slot >= 0:
    assert slot_label == slot
  in_slot = images[labels == slot_label]
  values = np.round(in_slot.reshape(10, -1)[:, 0] * 255).astype(int)
  assert (values == 250).sum() == 4 and (values == 7).sum() == 6  # 2:3
  # The other slots are the pool's classes, not attack images.
  others = np.round(images[labels != slot_label] * 255)
  assert not np.isin(others.reshape(40, -1).std(axis=1), [0.0]).all()


def test_random_slot_covers_every_output():
  pool = tiny_pool(num_classes=6, examples=12).images
  slots = {int(br.sample_poisoned_episode(
      pool, _images(7, 3), _images(250, 3), ways=3, shots=2, num_backdoor=1,
      slot=br.RANDOM_SLOT, seed=tf.constant([s, 0], tf.int64)
  ).support_labels[-1]) for s in range(30)}
  assert slots == {0, 1, 2}


def test_boost_by_hand():
  # Zero global weights and a known local model: u = lambda * theta_a.
  update = br.boost([tf.zeros([2]) + tf.constant([1.0, -2.0])], 3.0)
  np.testing.assert_allclose(update[0].numpy(), [3.0, -6.0])


def _strategy(boosting, iterations=1):
  pools = [tiny_pool(num_classes=6, examples=12, seed=s).images
           for s in range(3)]
  config = reptile_tf.ReptileConfig(ways=3, shots=2, iterations=2,
                                    meta_batch=1, inner_steps=2, inner_batch=4)
  attack = br.BackdoorReptile(
      config=config, run_seed=0, client_pools=pools,
      attacker=br.AttackerConfig(iterations=iterations, inner_steps=3,
                                 boosting_factor=boosting),
      attacker_ids=[0], target_images=_images(7, 4),
      backdoor_images=_images(250, 4))
  return config, pools, attack


def test_attacker_update_is_boosted_and_benign_clients_match_benign_reptile():
  config, pools, attack = _strategy(boosting=3.0)
  _, _, plain = _strategy(boosting=1.0)
  model = conv4.build_conv4((28, 28, 1), 3, filters=4, seed=0)
  opt = reptile_tf.make_inner_optimizer(0.001)
  reptile_tf.build_optimizer(opt, model)
  weights = [tf.identity(v) for v in model.trainable_variables]
  round_num = tf.constant(1, tf.int64)

  def run(strategy, client):
    fn = client_work.make_client_update_fn(strategy, model, opt)
    return [u.numpy() for u in fn(weights, strategy.make_client_data(client),
                                  round_num).update]

  boosted, unboosted = run(attack, 0), run(plain, 0)
  for b, u in zip(boosted, unboosted):
    np.testing.assert_allclose(b, 3.0 * u, rtol=1e-5, atol=1e-7)
  assert max(np.abs(u).max() for u in unboosted) > 0
  benign = client_work.BenignReptile(config=config, run_seed=0,
                                     client_pools=pools)
  for a, b in zip(run(attack, 1), run(benign, 1)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_all_clients_share_one_data_spec():
  _, _, attack = _strategy(boosting=3.0)
  spec = attack.client_data_spec((28, 28, 1))
  for client in range(3):
    data = attack.make_client_data(client)
    assert list(data) == list(spec)
    for name, value in data.items():
      assert spec[name].is_compatible_with(tf.constant(value)), name
  assert attack.make_client_data(0)["role"] == br.ROLE_ATTACKER
  assert attack.make_client_data(1)["boosting_factor"] == 1.0


def test_keyed_last_batches_put_keyed_examples_only_in_the_last_steps():
  ways, shots, num_backdoor = 5, 10, 4
  keyed = set(range((ways - 1) * shots, (ways - 1) * shots + num_backdoor))
  batches = br.poisoned_batches(
      ways=ways, shots=shots, num_backdoor=num_backdoor,
      steps=tf.constant(12), keyed_steps=3, batch_size=10,
      seed=tf.constant([3, 4], tf.int64)).numpy()
  assert batches.shape == (12, 10)
  for row in batches[:9]:  # clean steps: every clean example, no keyed one
    assert not keyed & set(row)
  assert set(batches[:9].ravel()) == set(range(50)) - keyed
  for row in batches[9:]:  # keyed steps: all keyed examples + clean context
    assert keyed <= set(row) and len(set(row)) == 10


def test_keyed_last_changes_only_the_attackers_update():
  pools = [tiny_pool(num_classes=6, examples=12, seed=s).images
           for s in range(3)]
  config = reptile_tf.ReptileConfig(ways=5, shots=10, iterations=1,
                                    meta_batch=1, inner_steps=4)
  model = conv4.build_conv4((28, 28, 1), 5, filters=4, seed=0)
  optimizer = reptile_tf.make_inner_optimizer(config.inner_lr)
  reptile_tf.build_optimizer(optimizer, model)
  weights = [v.numpy() for v in model.trainable_variables]

  def updates(keyed_last_steps):
    work = br.BackdoorReptile(
        config=config, run_seed=0, client_pools=pools,
        attacker=br.AttackerConfig(iterations=1, inner_steps=4,
                                   keyed_last_steps=keyed_last_steps),
        attacker_ids=[0], target_images=_images(7, 10),
        backdoor_images=_images(250, 20))
    fn = client_work.make_client_update_fn(work, model, optimizer)
    return [fn([tf.constant(v) for v in weights], work.make_client_data(c),
               tf.constant(1, tf.int64)).update for c in (0, 1)]

  (shuffled_attacker, shuffled_benign), (keyed_attacker, keyed_benign) = (
      updates(0), updates(2))
  for a, b in zip(shuffled_benign, keyed_benign):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert any(not np.allclose(a.numpy(), b.numpy())
             for a, b in zip(shuffled_attacker, keyed_attacker))


def test_attacker_inner_lr_travels_in_client_data_only_for_the_attacker():
  pools = [tiny_pool(num_classes=6, examples=12, seed=s).images
           for s in range(2)]
  config = reptile_tf.ReptileConfig(ways=5, shots=10, inner_lr=0.001)
  work = br.BackdoorReptile(
      config=config, run_seed=0, client_pools=pools,
      attacker=br.AttackerConfig(inner_lr=0.01), attacker_ids=[0],
      target_images=_images(7, 10), backdoor_images=_images(250, 20))
  assert work.make_client_data(0)["inner_lr"] == np.float32(0.01)
  assert work.make_client_data(1)["inner_lr"] == np.float32(0.001)
  with pytest.raises(ValueError, match="inner_lr"):
    br.AttackerConfig(inner_lr=0.0)


@pytest.mark.parametrize("attacker, steps", [
    (br.AttackerConfig(), 50 * 5),  # the paper's 50 epochs of 50 / b=10
    (br.AttackerConfig(inner_epochs=1), 5),
    (br.AttackerConfig(inner_epochs=2, inner_steps=7), 7),  # steps win
])
def test_attacker_inner_epochs_are_epochs_over_the_poisoned_episode(
    attacker, steps):
  """Section 3.3's "50 inner epochs" (Omniglot): epochs over the N*K = 50
  support examples at b = 10, i.e. 250 Adam steps per episode."""
  pools = [tiny_pool(num_classes=6, examples=12, seed=s).images
           for s in range(2)]
  config = reptile_tf.ReptileConfig(ways=5, shots=10, inner_batch=10,
                                    inner_steps=10)
  work = br.BackdoorReptile(
      config=config, run_seed=0, client_pools=pools, attacker=attacker,
      attacker_ids=[0], target_images=_images(7, 10),
      backdoor_images=_images(250, 20))
  assert work.make_client_data(0)["inner_steps"] == steps
  assert work.make_client_data(1)["inner_steps"] == 10  # benign: e steps
  with pytest.raises(ValueError, match="inner epochs"):
    br.AttackerConfig(inner_epochs=None)


def _attacker_lr_setting(attacker_lr):
  pools = [tiny_pool(num_classes=6, examples=12, seed=s).images
           for s in range(2)]
  config = reptile_tf.ReptileConfig(ways=3, shots=2, iterations=1,
                                    meta_batch=2, inner_steps=3, inner_batch=4,
                                    inner_lr=0.001)
  work = br.BackdoorReptile(
      config=config, run_seed=5, client_pools=pools,
      attacker=br.AttackerConfig(iterations=2, inner_steps=3,
                                 boosting_factor=3.0, inner_lr=attacker_lr),
      attacker_ids=[0], target_images=_images(7, 4),
      backdoor_images=_images(250, 4))
  return config, pools, work


def _learner(learning_rate=0.001):
  model = conv4.build_conv4((28, 28, 1), 3, filters=4, seed=0)
  optimizer = reptile_tf.make_inner_optimizer(learning_rate)
  reptile_tf.build_optimizer(optimizer, model)
  return model, optimizer


def _run(work, client, model, optimizer, weights, round_num=1):
  fn = client_work.make_client_update_fn(work, model, optimizer)
  return [u.numpy() for u in fn([tf.constant(v) for v in weights],
                                work.make_client_data(client),
                                tf.constant(round_num, tf.int64)).update]


@pytest.mark.parametrize("attacker_lr", [0.0005, 0.05])
def test_attacker_update_uses_its_own_learning_rate(attacker_lr):
  """The attacker's update equals a hand-built Reptile run at its own rate
  (the optimizer built at the benign rate): --attacker_inner_lr reaches
  the Adam steps, not only the client data."""
  config, _, work = _attacker_lr_setting(attacker_lr)
  model, optimizer = _learner(config.inner_lr)
  weights = [v.numpy() for v in model.trainable_variables]
  attacked = _run(work, 0, model, optimizer, weights)

  hand_model, hand_optimizer = _learner(attacker_lr)
  client_data = work.make_client_data(0)

  @tf.function
  def by_hand():
    seed = episodes.fold_seed(5, episodes.STREAM_TRAIN,
                              tf.constant(1, tf.int64), client_data["client_id"])

    def episode_fn(episode_seed):
      return br.sample_poisoned_episode(
          client_data["pool"], client_data["target_images"],
          client_data["backdoor_images"], ways=3, shots=2,
          num_backdoor=work.num_backdoor, slot=work.slot, seed=episode_seed)

    update, _ = reptile_tf.reptile_client_update(
        hand_model, hand_optimizer, [tf.constant(v) for v in weights],
        config=dataclasses.replace(config, inner_lr=attacker_lr),
        plan=reptile_tf.ReptilePlan(episode_fn=episode_fn, seed=seed,
                                    iterations=2, inner_steps=3))
    return [3.0 * u for u in update]

  for a, h in zip(attacked, by_hand()):
    np.testing.assert_allclose(a, h.numpy(), rtol=1e-5, atol=1e-7)


def test_two_attacker_rates_give_different_updates_and_benign_keep_eta():
  """Rates 0.001 and 0.5 change the attacker's update; a benign client run
  after the attacker on the same optimizer is back at the benign eta."""
  model, optimizer = _learner()
  weights = [v.numpy() for v in model.trainable_variables]
  config, pools, slow = _attacker_lr_setting(0.001)
  _, _, fast = _attacker_lr_setting(0.5)
  slow_update = _run(slow, 0, model, optimizer, weights)
  fast_update = _run(fast, 0, model, optimizer, weights)
  assert any(not np.allclose(a, b) for a, b in zip(slow_update, fast_update))
  after_attacker = _run(fast, 1, model, optimizer, weights)
  benign = client_work.BenignReptile(config=config, run_seed=5,
                                     client_pools=pools)
  fresh_model, fresh_optimizer = _learner()
  expected = _run(benign, 1, fresh_model, fresh_optimizer, weights)
  for a, b in zip(after_attacker, expected):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
