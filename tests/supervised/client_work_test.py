"""FedAvg client work: local SGD and the model-replacement boost."""

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.meta import client_work as client_work_lib
from fedmeta_tf.supervised import client_work
from fedmeta_tf.supervised import model as model_lib


def test_boost_scales_the_update_and_training_lowers_loss():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 255, [16, 8, 8, 1]).astype(np.uint8)
  y = (np.arange(16) % 2).astype(np.int32)
  work = client_work.SupervisedFedAvg(
      client_datasets=[(x, y), (x, y)], boosting_factors=[1.0, 3.0], learning_rate=0.1,
      epochs=3, batch_size=4, run_seed=0)
  model = model_lib.build_supervised_cnn((8, 8, 1), 2, filters=(2, 2, 4),
                                         hidden=4)
  fn = client_work_lib.make_client_update_fn(work, model, None)
  weights = [tf.identity(v) for v in model.trainable_variables]
  benign = fn(weights, work.make_client_data(0), tf.constant(0, tf.int64))
  attacker_data = work.make_client_data(1)
  attacker_data["client_id"] = np.int32(0)  # same mini-batches as client 0
  boosted = fn(weights, attacker_data, tf.constant(0, tf.int64))
  for b, a in zip(benign.update, boosted.update):
    np.testing.assert_allclose(3 * b.numpy(), a.numpy(), rtol=1e-4, atol=1e-6)
  assert max(float(tf.reduce_max(tf.abs(u))) for u in benign.update) > 0
  spec = work.client_data_spec((8, 8, 1))
  assert spec["x"].shape.as_list() == [None, 8, 8, 1]


def test_attacker_is_benign_before_its_first_attack_round():
  rng = np.random.default_rng(1)
  x = rng.integers(0, 255, [20, 8, 8, 1]).astype(np.uint8)
  y = (np.arange(20) % 2).astype(np.int32)
  clean = (x[:16], y[:16])
  # Client 0 benign (clean data); client 1 the attacker (clean + 4 keyed
  # examples, boost 3, attacking from round 1); client 2 trains on all 20
  # examples with boost 1 from round 0.
  work = client_work.SupervisedFedAvg(
      client_datasets=[clean, (x, y), (x, y)], boosting_factors=[1.0, 3.0, 1.0],
      learning_rate=0.1, epochs=2, batch_size=4, run_seed=0,
      clean_sizes=[16, 16, 20], attack_from=[0, 1, 0])
  model = model_lib.build_supervised_cnn((8, 8, 1), 2, filters=(2, 2, 4),
                                         hidden=4)
  fn = client_work_lib.make_client_update_fn(work, model, None)
  weights = [tf.identity(v) for v in model.trainable_variables]

  def update(client, round_num):
    data = work.make_client_data(client)
    data["client_id"] = np.int32(0)  # the same mini-batch order
    return [u.numpy() for u in fn(weights, data,
                                  tf.constant(round_num, tf.int64)).update]

  for a, b in zip(update(1, 0), update(0, 0)):  # round 0: benign
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  for a, b in zip(update(1, 1), update(2, 1)):  # round 1: all data, boosted
    np.testing.assert_allclose(a, 3 * b, rtol=1e-4, atol=1e-6)
  assert not np.allclose(update(1, 1)[0], 3 * update(0, 1)[0])
  with pytest.raises(ValueError, match="clean size"):
    client_work.SupervisedFedAvg(
        client_datasets=[clean], boosting_factors=[1.0], learning_rate=0.1, epochs=1,
        batch_size=4, run_seed=0, clean_sizes=[17])
