"""Tests for fedmeta_tf.defenses.local.glorot_mix (Algorithm 2, lines 2-5)."""

import numpy as np
import pytest

from fedmeta_tf.defenses.local import glorot_mix
from fedmeta_tf.models import conv4

SHAPE = (28, 28, 1)


def test_mix_is_delta_weighted_average_by_hand():
  mixed = glorot_mix.glorot_mix([np.full(3, 10.0)], [np.full(3, 0.0)],
                                delta=0.3)
  np.testing.assert_allclose(mixed[0], 3.0)
  mixed = glorot_mix.glorot_mix([np.array([2.0])], [np.array([-1.0])],
                                delta=1.0)
  np.testing.assert_allclose(mixed[0], 2.0)


def test_mixed_conv4_pulls_batch_norm_toward_its_initialisation():
  model = conv4.build_conv4(SHAPE, 5, filters=4, seed=0)
  theta_g = [np.full(v.shape, 2.0, np.float32) for v in model.trainable_variables]
  mixed = glorot_mix.mixed_weights(theta_g, image_shape=SHAPE, num_classes=5,
                                   variant="maxpool", filters=4, delta=0.3,
                                   seed=0, client=1)
  names = [v.name for v in model.trainable_variables]
  gamma = mixed[names.index("norm1/gamma:0")]
  beta = mixed[names.index("norm1/beta:0")]
  np.testing.assert_allclose(gamma, 0.3 * 2.0 + 0.7 * 1.0, rtol=1e-6)
  np.testing.assert_allclose(beta, 0.3 * 2.0, rtol=1e-6)
  kernel = mixed[names.index("conv1/kernel:0")]
  noise = (kernel - 0.6) / 0.7  # the Glorot draw, recovered
  limit = np.sqrt(6.0 / (9 * 1 + 9 * 4))  # Glorot-uniform bound of conv1
  assert np.all(np.abs(noise) <= limit + 1e-5) and noise.std() > limit / 4


def test_noise_is_seeded_per_client_and_differs_from_the_model_init():
  seeds = {glorot_mix.noise_seed(0, c) for c in range(4)}
  assert len(seeds) == 4 and glorot_mix.noise_seed(0, 1) == glorot_mix.noise_seed(0, 1)
  model = conv4.build_conv4(SHAPE, 5, filters=4, seed=0)
  kernels = [i for i, v in enumerate(model.trainable_variables)
             if "kernel" in v.name]
  draw = glorot_mix.fresh_conv4_weights(SHAPE, 5, variant="maxpool", filters=4,
                                        seed=glorot_mix.noise_seed(0, 1))
  # No kernel of the draw repeats one of the global model's initial kernels.
  init = model.get_weights()
  for i in kernels:
    for j in kernels:
      if init[i].shape == draw[j].shape:
        assert not np.allclose(init[i], draw[j])


def test_feature_part_drops_the_dense_layer():
  model = conv4.build_conv4(SHAPE, 5, filters=4)
  weights = model.get_weights()
  features = glorot_mix.feature_part(weights, image_shape=SHAPE, num_classes=5,
                                     variant="maxpool", filters=4)
  assert len(features) == len(weights) - 2  # dense kernel and bias
  np.testing.assert_array_equal(features[0], weights[0])


def test_bad_delta_and_architecture_are_rejected():
  with pytest.raises(ValueError, match=r"delta must be in \[0, 1\], got 1.5"):
    glorot_mix.glorot_mix([np.zeros(1)], [np.zeros(1)], delta=1.5)
  with pytest.raises(ValueError, match="not the same architecture"):
    glorot_mix.glorot_mix([np.zeros(1)], [], delta=0.5)
  with pytest.raises(ValueError, match="shape mismatch"):
    glorot_mix.glorot_mix([np.zeros(1)], [np.zeros(2)], delta=0.5)
