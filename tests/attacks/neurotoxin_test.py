"""Neurotoxin (Zhang et al., ICML 2022, Algorithm 1) as BackdoorReptile's
attacker: its sent update is zero on the top-k% coordinates of its own
benign update and the boosted update elsewhere; ratio 0 is today's attack."""

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.attacks import backdoor_reptile as br
from fedmeta_tf.attacks import neurotoxin
from fedmeta_tf.meta import client_work
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.models import conv4
from tests.conftest import tiny_pool

RATIO = 0.05
ROUND = tf.constant(1, tf.int64)


def test_keep_mask_by_hand():
  direction = [tf.constant([[1.0, -5.0]]), tf.constant([0.5, 4.0, -2.0, 0.0])]
  # n = 6, k = floor(0.4 * 6) = 2: |-5| and |4| are masked, across layers.
  mask = neurotoxin.keep_mask(direction, 0.4)
  np.testing.assert_array_equal(mask[0].numpy(), [[1.0, 0.0]])
  np.testing.assert_array_equal(mask[1].numpy(), [1.0, 0.0, 1.0, 1.0])
  assert all(np.all(m.numpy() == 1) for m in neurotoxin.keep_mask(direction,
                                                                  0.1))
  with pytest.raises(ValueError, match="neurotoxin_ratio"):
    br.AttackerConfig(neurotoxin_ratio=1.0)


def _model():
  return conv4.build_conv4((28, 28, 1), 3, filters=4, seed=0)


def _setting(ratio):
  pools = [tiny_pool(num_classes=6, examples=12, seed=s).images
           for s in range(3)]
  config = reptile_tf.ReptileConfig(ways=3, shots=2, iterations=2,
                                    meta_batch=1, inner_steps=2, inner_batch=4)
  work = br.BackdoorReptile(
      config=config, run_seed=0, client_pools=pools,
      attacker=br.AttackerConfig(iterations=2, inner_steps=3,
                                 boosting_factor=3.0, neurotoxin_ratio=ratio),
      attacker_ids=[0], target_images=np.full([4, 28, 28, 1], 7, np.uint8),
      backdoor_images=np.full([4, 28, 28, 1], 250, np.uint8),
      model_fn=_model)
  return config, pools, work


@pytest.fixture(name="learner", scope="module")
def _learner():
  model = _model()
  optimizer = reptile_tf.make_inner_optimizer(0.001)
  reptile_tf.build_optimizer(optimizer, model)
  return model, optimizer, [v.numpy() for v in model.trainable_variables]


def _update(work, client, learner, update=None):
  model, optimizer, weights = learner
  if update is not None:  # an explicit update method (today's)
    fn = tf.function(lambda w, d, r: update(work, model, optimizer, list(w),
                                            d, r))
  else:
    fn = client_work.make_client_update_fn(work, model, optimizer)
  out = fn([tf.constant(v) for v in weights], work.make_client_data(client),
           ROUND)
  return [u.numpy() for u in out.update]


def test_sent_update_is_zero_on_the_benign_top_k_and_boosted_elsewhere(
    learner):
  config, pools, toxic = _setting(RATIO)
  _, _, plain = _setting(0.0)
  sent, boosted = _update(toxic, 0, learner), _update(plain, 0, learner)
  # The attacker's benign update: what it sends as a benign client.
  benign = client_work.BenignReptile(config=config, run_seed=0,
                                     client_pools=pools)
  direction = np.concatenate([u.ravel() for u in _update(benign, 0, learner)])
  k = int(RATIO * direction.size)
  top = np.argsort(-np.abs(direction), kind="stable")[:k]
  masked = np.zeros(direction.size, bool)
  masked[top] = True
  sent, boosted = (np.concatenate([u.ravel() for u in x])
                   for x in (sent, boosted))
  assert k > 0 and np.abs(boosted[masked]).max() > 0
  np.testing.assert_array_equal(sent[masked], 0.0)
  np.testing.assert_array_equal(sent[~masked], boosted[~masked])
  # Benign clients are untouched.
  for a, b in zip(_update(toxic, 1, learner), _update(plain, 1, learner)):
    np.testing.assert_array_equal(a, b)


def test_ratio_zero_is_todays_boosted_update(learner):
  _, _, work = _setting(0.0)
  today = _update(work, 0, learner, update=client_work.ReptileClientWork.update)
  for a, b in zip(_update(work, 0, learner), today):
    np.testing.assert_array_equal(a, b)


def test_chunks_then_finish_give_the_one_call_update(learner):
  """The in-process driver's path (`run_iterations`, eager `finish`, the
  mask from a learner of its own) sends what `update` sends."""
  model, optimizer, weights = learner
  _, _, work = _setting(RATIO)
  data = work.make_client_data(0)
  chunk = client_work.make_client_chunk_fn(work, model, optimizer)
  reptile_tf.reset_optimizer(optimizer)
  theta, loss_sum = [tf.constant(v) for v in weights], tf.constant(0.0)
  for start in range(2):
    theta, loss_sum = chunk(theta, loss_sum, data, ROUND, tf.constant(start),
                            tf.constant(start + 1))
  chunked = work.finish([tf.constant(v) for v in weights], theta, loss_sum,
                        data, ROUND).update
  for a, b in zip(chunked, _update(work, 0, learner)):
    np.testing.assert_allclose(a.numpy(), b, rtol=1e-5, atol=1e-7)
  assert sum(int(np.sum(a.numpy() == 0)) for a in chunked) >= int(
      RATIO * sum(v.size for v in weights))
