"""Conv4, the few-shot backbone of the papers (main paper, Section 3.3).

    4 x [3x3 conv, 64 filters, batch norm, ReLU, 2x2 max-pool] -> dense(N)

`variant="strided"` is the Reptile paper's Omniglot model instead: 3x3 convs
with stride 2 and no pooling. The feature extractor (everything up to and
including the flatten) is a Keras model of its own, reachable as
`model.get_layer(FEATURES_LAYER)`, so the local defense can put a matching
head on it.

Batch norm uses the statistics of the batch at hand, in training and in
evaluation (`BatchStatNorm`). This is what MAML and Reptile do (their
"transductive" setting): a meta-learned model is only ever evaluated after
fine-tuning on an episode, and moving averages collected across thousands of
different episodes describe none of them. It also means the model's weights
are exactly its trainable variables, which is what federated Reptile
averages.

Under Keras mixed precision (`precision.py`, `--precision=mixed_bfloat16`)
the convolutions and the normalisation's input and output are bfloat16; the
normalisation's statistics and its gamma / beta are float32 (the fused batch
norm accumulates in float32, as Keras' own BatchNormalization does), and the
logits are a float32 layer (a softmax of bfloat16 logits loses too much).

The convolutions have no bias: the batch norm that follows subtracts the
mean, so a bias would get a gradient of exactly zero up to rounding, and Adam
(which divides by the gradient's scale) would turn that rounding noise into
steps of size eta, making runs differ across thread counts and runtimes.
"""

from __future__ import annotations

import enum

import tensorflow as tf

from fedmeta_tf import enums

FEATURES_LAYER = "features"
LOGITS_LAYER = "logits"


class Conv4Variant(enum.Enum):
  MAXPOOL = "maxpool"
  STRIDED = "strided"


def parse_variant(variant) -> Conv4Variant:
  return enums.parse_enum(Conv4Variant, variant, "Conv4 variant")


class BatchStatNorm(tf.keras.layers.Layer):
  """Batch normalisation by the current batch's statistics (no moving stats).

  y = gamma * (x - mean) / sqrt(var + epsilon) + beta, with mean and (biased)
  var over every axis but the last.

  Images (rank 4, NHWC) go through TensorFlow's fused batch norm in training
  mode, which normalises by exactly these statistics, accumulated in float32
  whatever the input's dtype; it is one kernel where `tf.nn.moments` plus
  `tf.nn.batch_normalization` are several; the inner loop ran 1.0-1.7x faster
  in float32 and bfloat16 began to pay off (docs/results/performance.md).
  Other ranks use the unfused formula. gamma and beta are float32 variables
  that Keras' mixed precision does not cast to bfloat16 (as in Keras'
  BatchNormalization).
  """

  def __init__(self, epsilon: float = 1e-3, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = epsilon

  def build(self, input_shape):
    channels = int(input_shape[-1])
    self.gamma = self.add_weight(name="gamma", shape=[channels],
                                 initializer="ones", dtype=tf.float32,
                                 experimental_autocast=False)
    self.beta = self.add_weight(name="beta", shape=[channels],
                                initializer="zeros", dtype=tf.float32,
                                experimental_autocast=False)

  def call(self, x):
    if x.shape.rank == 4:
      y, _, _ = tf.compat.v1.nn.fused_batch_norm(
          x, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
      return y
    x32 = tf.cast(x, tf.float32)
    axes = list(range(len(x.shape) - 1))
    mean, variance = tf.nn.moments(x32, axes=axes)
    y = tf.nn.batch_normalization(x32, mean, variance, self.beta, self.gamma,
                                  self.epsilon)
    return tf.cast(y, x.dtype)

  def get_config(self):
    return {**super().get_config(), "epsilon": self.epsilon}


def build_feature_extractor(input_shape: tuple[int, int, int], *,
                            variant: Conv4Variant | str = Conv4Variant.MAXPOOL,
                            filters: int = 64, seed: int = 0) -> tf.keras.Model:
  """The four conv blocks and a flatten: images -> features.

  Args:
    input_shape: (H, W, channels) of the images, values in [0, 1].
    variant: `maxpool` (Section 3.3) or `strided` (Reptile's Omniglot model).
    filters: channels of every conv layer.
    seed: seeds the Glorot initialisers (layer i uses seed + i).
  """
  variant = parse_variant(variant)
  if len(input_shape) != 3 or min(input_shape) <= 0:
    raise ValueError(f"input_shape must be (H, W, channels), got {input_shape}")
  if filters <= 0:
    raise ValueError(f"filters must be positive, got {filters}")
  inputs = tf.keras.Input(shape=input_shape, name="images")
  x = inputs
  for i in range(4):
    strides = 2 if variant is Conv4Variant.STRIDED else 1
    x = tf.keras.layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False,
        kernel_initializer=tf.keras.initializers.GlorotUniform(seed=seed + i),
        name=f"conv{i + 1}")(x)
    x = BatchStatNorm(name=f"norm{i + 1}")(x)
    x = tf.keras.layers.ReLU(name=f"relu{i + 1}")(x)
    if variant is Conv4Variant.MAXPOOL:
      x = tf.keras.layers.MaxPool2D(2, name=f"pool{i + 1}")(x)
  x = tf.keras.layers.Flatten(name="flatten")(x)
  return tf.keras.Model(inputs, x, name=FEATURES_LAYER)


def build_conv4(input_shape: tuple[int, int, int], num_classes: int, *,
                variant: Conv4Variant | str = Conv4Variant.MAXPOOL,
                filters: int = 64, seed: int = 0) -> tf.keras.Model:
  """Conv4 classifier: feature extractor + dense layer with `num_classes` logits.

  The model outputs logits; the softmax of Section 3.3 is applied by the loss
  (`from_logits=True`) and by the serving signature.
  """
  variant = parse_variant(variant)
  if num_classes < 2:
    raise ValueError(f"num_classes (N) must be >= 2, got {num_classes}")
  features = build_feature_extractor(input_shape, variant=variant,
                                     filters=filters, seed=seed)
  inputs = tf.keras.Input(shape=input_shape, name="images")
  logits = tf.keras.layers.Dense(
      num_classes,
      kernel_initializer=tf.keras.initializers.GlorotUniform(seed=seed + 4),
      dtype=tf.float32, name=LOGITS_LAYER)(features(inputs))
  return tf.keras.Model(inputs, logits, name=f"conv4_{variant.value}")


def feature_extractor(model: tf.keras.Model) -> tf.keras.Model:
  """The feature-extractor sub-model of a `build_conv4` model (shared weights)."""
  return model.get_layer(FEATURES_LAYER)
