"""Stacked Conv4: E models trained in one computation equal each trained alone."""

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.models import conv4
from fedmeta_tf.models import precision
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
@pytest.mark.parametrize("formulation", ["grouped", "loop", "patches"])
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
  trained, last_losses = tf.function(stacked_conv4.train_steps)(
      stacked_conv4.stack(starts), images, labels, batches,
      learning_rate=RATE, variant=variant, formulation=formulation)
  for e in range(MODELS):
    weights_alone, loss_alone = expected[e]
    moved = max(np.abs(a - b).max() for a, b in zip(weights_alone, starts[e]))
    assert moved > RATE  # the steps did move the weights (Adam: ~RATE each)
    for ours, alone in zip(trained, weights_alone):
      # rtol: the patches formulation sums batch moments in another order.
      np.testing.assert_allclose(ours[e], alone, rtol=1e-3, atol=2e-5)
    np.testing.assert_allclose(last_losses[e], loss_alone, rtol=1e-4)


def _trained_alone(model, start, images, labels, batches):
  """(weights, last loss) of one model after `reptile_tf.train_steps`
  (Keras Conv4, Keras Adam)."""
  optimizer = reptile_tf.make_inner_optimizer(RATE)
  reptile_tf.build_optimizer(optimizer, model)
  for variable, value in zip(model.trainable_variables, start):
    variable.assign(value)
  loss = tf.function(reptile_tf.train_steps)(
      model, optimizer, images, labels, steps=STEPS, batch_size=BATCH,
      seed=None, batches=batches)
  return [v.numpy() for v in model.trainable_variables], loss.numpy()


def test_repeat_and_bad_formulation():
  weights = [tf.ones([3, 2]), tf.zeros([2])]
  stacked = stacked_conv4.repeat(weights, 4)
  assert [s.shape for s in stacked] == [(4, 3, 2), (4, 2)]
  with pytest.raises(ValueError, match="formulation"):
    stacked_conv4.parse_formulation("winograd")


def test_stackable_names_the_variant_and_dtype_and_refuses_others():
  for variant in conv4.Conv4Variant:
    model = conv4.build_conv4((16, 16, 1), 3, variant=variant, filters=4)
    assert stacked_conv4.stackable(model) == (variant, tf.float32)
  features = conv4.build_feature_extractor((16, 16, 1), filters=4)
  with pytest.raises(ValueError, match="Conv4 classifier"):
    stacked_conv4.stackable(features)
  for variant in conv4.Conv4Variant:  # the local defense's extractors
    assert stacked_conv4.stackable_features(conv4.build_feature_extractor(
        (16, 16, 1), variant=variant, filters=4)) == (variant, tf.float32)
  with pytest.raises(ValueError, match="feature extractor"):
    stacked_conv4.stackable_features(model)
  with precision.policy("mixed_bfloat16"):
    bf16 = conv4.build_conv4((16, 16, 1), 3, filters=4)
  assert stacked_conv4.stackable(bf16) == (conv4.Conv4Variant.MAXPOOL,
                                           tf.bfloat16)
  assert stacked_conv4.stackable_features(conv4.feature_extractor(bf16)) == (
      conv4.Conv4Variant.MAXPOOL, tf.bfloat16)
  policy = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    fp16 = conv4.build_conv4((16, 16, 1), 3, filters=4)
  finally:
    tf.keras.mixed_precision.set_global_policy(policy)
  with pytest.raises(ValueError, match="float32 or bfloat16"):
    stacked_conv4.stackable(fp16)
