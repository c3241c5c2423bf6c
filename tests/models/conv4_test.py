"""Tests for fedmeta_tf.models.conv4."""

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.models import conv4


def _num_params(model):
  return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def test_maxpool_conv4_shapes_and_parameter_count():
  model = conv4.build_conv4((28, 28, 1), 5)
  assert model(tf.zeros([3, 28, 28, 1])).shape == (3, 5)
  # 4 convs without bias (BN follows): 3*3*1*64 + 3 * 3*3*64*64; 4 BN x
  # (gamma, beta) x 64; dense: 28 -> 14 -> 7 -> 3 -> 1, so 64 features * 5 + 5.
  expected = 3 * 3 * 64 + 3 * (3 * 3 * 64 * 64) + 4 * 2 * 64 + (64 * 5 + 5)
  assert _num_params(model) == expected == 112_005
  assert not model.non_trainable_variables


def test_strided_variant_has_more_features():
  model = conv4.build_conv4((28, 28, 1), 5, variant="strided")
  features = conv4.feature_extractor(model)
  # 28 -> 14 -> 7 -> 4 -> 2 with stride 2 and 'same' padding: 2*2*64.
  assert features(tf.zeros([2, 28, 28, 1])).shape == (2, 256)
  assert model(tf.zeros([2, 28, 28, 1])).shape == (2, 5)


def test_feature_extractor_shares_weights_with_the_model():
  model = conv4.build_conv4((28, 28, 1), 5, filters=8)
  features = conv4.feature_extractor(model)
  assert features.trainable_variables[0] is model.trainable_variables[0]


def test_color_input_and_seeded_initialisation():
  a = conv4.build_conv4((84, 84, 3), 5, filters=8, seed=1)
  b = conv4.build_conv4((84, 84, 3), 5, filters=8, seed=1)
  c = conv4.build_conv4((84, 84, 3), 5, filters=8, seed=2)
  np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
  assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])
  assert a(tf.zeros([2, 84, 84, 3])).shape == (2, 5)


def test_batch_stat_norm_normalises_by_the_batch():
  layer = conv4.BatchStatNorm()
  x = tf.random.normal([16, 4, 4, 3], mean=5.0, stddev=3.0, seed=0)
  y = layer(x).numpy()
  np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1.0, atol=1e-2)


def _formula(x, gamma, beta, epsilon=1e-3):
  mean, variance = tf.nn.moments(x, axes=list(range(len(x.shape) - 1)))
  return tf.nn.batch_normalization(x, mean, variance, beta, gamma, epsilon)


@pytest.mark.parametrize("shape", [[10, 7, 7, 16], [12, 16]])
def test_batch_stat_norm_equals_the_formula_and_its_gradients(shape):
  # Images take the fused kernel, other ranks the formula; both must be
  # gamma * (x - batch mean) / sqrt(batch var + eps) + beta, gradients too.
  layer = conv4.BatchStatNorm()
  x = tf.random.stateless_normal(shape, seed=[0, 1], mean=2.0, stddev=3.0)
  layer(x)
  layer.gamma.assign(tf.random.stateless_uniform(shape[-1:], [0, 2], 0.5, 1.5))
  layer.beta.assign(tf.random.stateless_normal(shape[-1:], [0, 3]))
  weights = tf.sin(x)
  grads = []
  for fn in (layer, lambda t: _formula(t, layer.gamma, layer.beta)):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = fn(x)
      loss = tf.reduce_sum(y * weights)
    grads.append([y] + tape.gradient(loss, [x, layer.gamma, layer.beta]))
  for ours, reference in zip(*grads):
    np.testing.assert_allclose(ours, reference, rtol=1e-4,
                               atol=1e-4 * float(tf.reduce_max(tf.abs(reference))))


def test_invalid_arguments_raise():
  with pytest.raises(ValueError, match="num_classes"):
    conv4.build_conv4((28, 28, 1), 1)
  with pytest.raises(ValueError, match="variant"):
    conv4.build_conv4((28, 28, 1), 5, variant="avgpool")
