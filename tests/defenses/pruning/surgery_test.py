"""Channel masks and extreme-weight zeroing on the supervised CNN and Conv4."""

import numpy as np
import pytest

from fedmeta_tf.defenses.pruning import surgery
from fedmeta_tf.models import conv4
from fedmeta_tf.supervised import model as model_lib


def test_pruned_supervised_channels_are_silent():
  model = model_lib.build_supervised_cnn((12, 12, 1), 3, filters=(2, 3, 5),
                                         hidden=4)
  target = surgery.supervised_target(model)
  weights = [v.numpy() for v in model.trainable_variables]
  model.set_weights(surgery.apply_channel_mask(weights, target, [1, 3]))
  acts = surgery.activation_model(model, target)(
      np.random.default_rng(0).uniform(size=[4, 12, 12, 1]).astype(np.float32))
  assert acts.shape[-1] == 5
  assert np.all(acts.numpy()[..., [1, 3]] == 0)
  assert np.any(acts.numpy()[..., [0, 2, 4]] != 0)


def test_pruned_conv4_channels_are_silent_through_batch_norm():
  model = conv4.build_conv4((16, 16, 1), 2, filters=4)
  target = surgery.conv4_target(model)
  assert len(target.channel_vectors) == 2  # gamma and beta of norm4
  weights = [v.numpy() for v in model.trainable_variables]
  weights[target.channel_vectors[1]][:] = 0.5  # beta would leak through ReLU
  model.set_weights(surgery.apply_channel_mask(weights, target, [2]))
  acts = surgery.activation_model(model, target)(
      np.random.default_rng(0).uniform(size=[3, 16, 16, 1]).astype(np.float32))
  assert np.all(acts.numpy()[..., 2] == 0)
  assert np.any(acts.numpy()[..., [0, 1, 3]] > 0)


def test_zero_extreme_weights_by_hand():
  # Channel 0 is pruned-in-name (ignored by mu/sigma, left alone); the alive
  # values 1, -1, 0 have mu 0 and sigma sqrt(2/3) ~ 0.816.
  weights = [np.array([10., 1., -1., 0.], np.float32).reshape([1, 1, 1, 4])]
  target = surgery.LayerTarget(kernel=0, channel_vectors=(),
                               activation_layer="x")
  out, zeroed = surgery.zero_extreme_weights(weights, target, 1.0, pruned=[0])
  assert zeroed == 2
  np.testing.assert_allclose(out[0].ravel(), [10., 0., 0., 0.])
  _, none_zeroed = surgery.zero_extreme_weights(weights, target, 2.0,
                                                pruned=[0])
  assert none_zeroed == 0
  with pytest.raises(ValueError, match="delta"):
    surgery.zero_extreme_weights(weights, target, 0.0)
