"""Tests for fedmeta_tf.evaluation.backdoor."""

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.attacks import backdoor_data as bd
from fedmeta_tf.evaluation import backdoor
from fedmeta_tf.evaluation import meta_test
from fedmeta_tf.models import conv4
from tests.conftest import tiny_pool


def _data():
  pool = tiny_pool(num_classes=24, examples=20)
  rest, reserved = bd.reserve_classes(pool, num_backdoor_classes=4, seed=0)
  data = bd.build_backdoor_data(reserved, bd.BackdoorConfig(), seed=0)
  return data, backdoor.eval_data(
      main_support=rest.images[:10, :15], main_queries=rest.images[:10, 15:],
      target_support=data.target_benign, target_queries=data.target_attacker,
      backdoor_pool=data.backdoor_benign, attack_train=data.attack_train,
      attack_val=data.attack_val, meta_test_pool=rest.images[10:])


@pytest.mark.parametrize("case_c", [False, True])
def test_target_episode_holds_the_target_at_its_slot(case_c):
  data, ev = _data()
  for s in range(5):
    episode, slot = backdoor.sample_target_episode(
        {k: tf.constant(v) for k, v in ev.items()}, ways=5,
        shots=5, queries=1, backdoor_in_episode=case_c,
        seed=tf.constant([s, 3], tf.int64))
    support = np.round(episode.support_images.numpy() * 255).astype(np.uint8)
    labels = episode.support_labels.numpy()
    target_set = {x.tobytes() for x in data.target_all}
    backdoor_set = {x.tobytes() for x in data.backdoor_benign.reshape(
        -1, 28, 28, 1)}
    in_target = [x.tobytes() in target_set for x in support]
    assert all(np.array(in_target) == (labels == int(slot)))
    assert any(x.tobytes() in backdoor_set for x in support) == case_c
    assert sorted(np.bincount(labels)) == [5] * 5


def test_backdoor_accuracy_of_an_untrained_model_is_at_most_chance():
  _, ev = _data()
  config = backdoor.BackdoorEvalConfig(
      episode=meta_test.EvalConfig(steps=4, episodes=20), curve_every=2)
  evaluator = backdoor.BackdoorEvaluator(
      lambda: conv4.build_conv4((28, 28, 1), 5, filters=4, seed=0),
      config=config, data=ev, seed=0)
  curves = evaluator.curves(
      [v.numpy() for v in evaluator.model.trainable_variables])
  assert config.curve_steps == [0, 2, 4]
  assert set(curves) == set(backdoor.METRICS)
  assert all(v.shape == (3,) for v in curves.values())
  # Keyed images land on a random slot: 1/N = 0.2 on average (20 episodes x
  # 20 images; 0.32 is > 3 standard deviations of the episode mean).
  for name in ("backdoor_train_accuracy", "backdoor_val_accuracy"):
    assert curves[name][-1] <= 0.32, (name, curves[name])


def test_target_rate_counts_predictions_of_the_target_slot():
  class Constant(tf.keras.Model):
    def call(self, x, training=False):
      return tf.one_hot(tf.fill([tf.shape(x)[0]], 2), 5)
  keyed = np.zeros([6, 28, 28, 1], np.uint8)
  context = tf.zeros([5, 28, 28, 1])
  assert float(backdoor.target_rate(Constant(), keyed, context, 2)) == 1.0
  assert float(backdoor.target_rate(Constant(), keyed, context, 1)) == 0.0


def test_config_validation():
  with pytest.raises(ValueError, match="curve_every"):
    backdoor.BackdoorEvalConfig(curve_every=0)
  with pytest.raises(ValueError, match="ways >= 3"):
    backdoor.BackdoorEvalConfig(episode=meta_test.EvalConfig(ways=2),
                                backdoor_in_episode=True)
