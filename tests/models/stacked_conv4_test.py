"""Stacked Conv4: E models trained in one computation equal each trained alone."""

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.models import conv4
from fedmeta_tf.models import stacked_conv4

MODELS, EXAMPLES, STEPS, BATCH, RATE = 3, 15, 3, 5, 0.01


def _data(shape):
  images = tf.random.stateless_uniform([MODELS, EXAMPLES, *shape], [0, 1])
  labels = tf.constant(np.tile(np.arange(5), (MODELS, EXAMPLES // 5)),
                       tf.int32)
  batches = tf.stack([reptile_tf.minibatch_indices(EXAMPLES, BATCH, STEPS,
                                                   [e, 2])
                      for e in range(MODELS)])
  return images, labels, batches


@pytest.mark.parametrize("variant", ["maxpool", "strided"])
@pytest.mark.parametrize("formulation", ["grouped", "loop"])
def test_models_trained_together_equal_each_trained_alone(variant,
                                                          formulation):
  shape = (28, 28, 1) if variant == "maxpool" else (20, 20, 3)
  model = conv4.build_conv4(shape, 5, filters=8, variant=variant, seed=1)
  start = [v.numpy() for v in model.trainable_variables]
  # Different starts per model, so a mixed-up model axis would show.
  starts = [[v + 0.01 * e for v in start] for e in range(MODELS)]
  images, labels, batches = _data(shape)
  expected = [_trained_alone(model, starts[e], images[e], labels[e],
                             batches[e]) for e in range(MODELS)]
  logits = tf.function(stacked_conv4.logits)(
      stacked_conv4.stack(starts), images[:, :BATCH], variant=variant,
      formulation=formulation)
  model_logits = []
  for e in range(MODELS):
    for variable, value in zip(model.trainable_variables, starts[e]):
      variable.assign(value)
    model_logits.append(model(images[e, :BATCH], training=True).numpy())
  np.testing.assert_allclose(logits, np.stack(model_logits), atol=1e-4)
  trained = tf.function(stacked_conv4.train_steps)(
      stacked_conv4.stack(starts), images, labels, batches,
      learning_rate=RATE, variant=variant, formulation=formulation)
  for e in range(MODELS):
    moved = max(np.abs(a - b).max() for a, b in zip(expected[e], starts[e]))
    assert moved > RATE  # the steps did move the weights (Adam: ~RATE each)
    for ours, alone in zip(trained, expected[e]):
      np.testing.assert_allclose(ours[e], alone, atol=2e-5)


def _trained_alone(model, start, images, labels, batches):
  """One model after `reptile_tf.train_steps` (Keras Conv4, Keras Adam)."""
  optimizer = reptile_tf.make_inner_optimizer(RATE)
  reptile_tf.build_optimizer(optimizer, model)
  for variable, value in zip(model.trainable_variables, start):
    variable.assign(value)
  tf.function(reptile_tf.train_steps)(
      model, optimizer, images, labels, steps=STEPS, batch_size=BATCH,
      seed=None, batches=batches)
  return [v.numpy() for v in model.trainable_variables]


def test_repeat_and_bad_formulation():
  weights = [tf.ones([3, 2]), tf.zeros([2])]
  stacked = stacked_conv4.repeat(weights, 4)
  assert [s.shape for s in stacked] == [(4, 3, 2), (4, 2)]
  with pytest.raises(ValueError, match="formulation"):
    stacked_conv4.parse_formulation("patches")
