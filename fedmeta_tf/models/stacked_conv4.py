"""E independent Conv4 models trained in one computation (issue #20).

An evaluation fine-tunes 40-50 episodes from the same weights one after
another (main paper, Section 3.1), each step a batch of about 10 images:
too little work to fill a GPU, and on a CPU each small kernel pays its own
overhead. Here the E models' weights are stacked (a leading axis E on every
variable, in Keras Conv4's `trainable_variables` order: conv kernel, gamma,
beta per block, then the dense kernel and bias) and a step of all E is one
computation. Three formulations of the same function:

  - `GROUPED`: the E models' channels side by side. Each convolution is one
    grouped convolution (E groups), each batch norm one fused kernel over
    the E*64 channels (a channel's statistics are its own model's batch
    statistics), ReLU and pooling act per channel, the dense head is one
    batched matmul.
  - `LOOP`: the E models' convolutions one after another inside the same
    graph, TensorFlow free to run them side by side.
  - `PATCHES`: each convolution as its 3x3 patches (nine shifted slices of
    the padded input, side by side on the channel axis) times the kernel,
    one batched matmul over the E models (issue #20's "patches + batched
    matmul"); batch norm from the per-model moments.

The models are Conv4 exactly (`conv4.py`: no conv bias, batch statistics in
training and evaluation alike) and the optimizer is Keras' Adam, so model e
after `train_steps` equals a Keras Conv4 trained alone by
`reptile_tf.train_steps` on the same mini-batches, to float tolerance
(`tests/models/stacked_conv4_test.py`). `compute_dtype` bfloat16 computes as
a Keras Conv4 under `mixed_bfloat16` does (`conv4.py`): convolutions,
batch norm in and out, ReLU and pooling in bfloat16, batch statistics and
the dense head in float32, float32 weights and Adam.

Used by `reptile_tf`'s batched meta-batch (`MetaBatchMode.BATCHED`: an outer
iteration's B episodes as one computation, float32), by the batched
evaluation (`evaluation/batched_eval.py`: an evaluation's episodes
fine-tuned together) and timed against one-at-a-time training by
`benchmarks/batched_episodes.py`.
"""

from __future__ import annotations

import enum
from typing import Sequence

import tensorflow as tf

from fedmeta_tf import enums
from fedmeta_tf.models import conv4

BLOCKS = 4
EPSILON = 1e-3  # conv4.BatchStatNorm's


class Formulation(enum.Enum):
  GROUPED = "grouped"
  LOOP = "loop"
  PATCHES = "patches"


def parse_formulation(value) -> Formulation:
  return enums.parse_enum(Formulation, value, "stacked Conv4 formulation")


def stackable(model: tf.keras.Model) -> tuple[conv4.Conv4Variant, tf.DType]:
  """(variant, compute dtype) of `model`, a `conv4.build_conv4` classifier
  built in float32 or under `mixed_bfloat16` (whose weights these functions
  stack); ValueError for any other model."""
  variants = {f"conv4_{v.value}": v for v in conv4.Conv4Variant}
  if model.name not in variants:
    raise ValueError(f"stacked training needs a Conv4 classifier "
                     f"(conv4.build_conv4), got model {model.name!r}")
  _, dtype = stackable_features(conv4.feature_extractor(model))
  return variants[model.name], dtype


def stackable_features(features_model: tf.keras.Model
                       ) -> tuple[conv4.Conv4Variant, tf.DType]:
  """(variant, compute dtype) of a `conv4.build_feature_extractor` model
  (the local defense's), as `stackable`."""
  if features_model.name != conv4.FEATURES_LAYER:
    raise ValueError(f"stacked features need a Conv4 feature extractor, got "
                     f"model {features_model.name!r}")
  dtypes = {layer.compute_dtype for layer in features_model.layers[1:]}
  if len(dtypes) != 1 or not dtypes <= {"float32", "bfloat16"}:
    raise ValueError(f"stacked training computes in float32 or bfloat16; "
                     f"the model computes in {sorted(dtypes)}")
  pooled = any(isinstance(layer, tf.keras.layers.MaxPool2D)
               for layer in features_model.layers)
  variant = (conv4.Conv4Variant.MAXPOOL if pooled
             else conv4.Conv4Variant.STRIDED)
  return variant, tf.as_dtype(dtypes.pop())


def stack(models_weights: Sequence[Sequence[tf.Tensor]]) -> list[tf.Tensor]:
  """[E models x variables] -> variables, each with a leading axis E."""
  return [tf.stack(column) for column in zip(*models_weights)]


def repeat(weights: Sequence[tf.Tensor], copies: int) -> list[tf.Tensor]:
  """One model's weights as `copies` stacked models (every episode of an
  evaluation starts from the weights under test)."""
  return [tf.repeat(tf.convert_to_tensor(v)[None], copies, axis=0)
          for v in weights]


def _side_by_side(x: tf.Tensor) -> tf.Tensor:
  """[E, B, H, W, C] -> [B, H, W, E*C]."""
  e, b, h, w_, c = tf.unstack(tf.shape(x))
  return tf.reshape(tf.transpose(x, [1, 2, 3, 0, 4]), [b, h, w_, e * c])


def _per_model(x: tf.Tensor, models: int) -> tf.Tensor:
  """[B, H, W, E*C] -> [E, B, H, W, C]."""
  b, h, w_, ec = tf.unstack(tf.shape(x))
  x = tf.reshape(x, [b, h, w_, models, ec // models])
  return tf.transpose(x, [3, 0, 1, 2, 4])


def _block_grouped(x, kernel, gamma, beta, strides: int, pool: bool):
  """One Conv4 block of all models: x [B, H, W, E*Cin], kernel [E, 3, 3,
  Cin, F] -> [B, H', W', E*F]."""
  e, kh, kw, cin, f = tf.unstack(tf.shape(kernel))
  filters = tf.reshape(tf.transpose(kernel, [1, 2, 3, 0, 4]),
                       [kh, kw, cin, e * f])
  x = tf.nn.conv2d(x, filters, strides=strides, padding="SAME")
  x, _, _ = tf.compat.v1.nn.fused_batch_norm(
      x, tf.reshape(gamma, [-1]), tf.reshape(beta, [-1]), epsilon=EPSILON,
      is_training=True)
  x = tf.nn.relu(x)
  return tf.nn.max_pool2d(x, 2, 2, "VALID") if pool else x


def _block_one(x, kernel, gamma, beta, strides: int, pool: bool):
  """One Conv4 block of one model: x [B, H, W, Cin]."""
  x = tf.nn.conv2d(x, kernel, strides=strides, padding="SAME")
  x, _, _ = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=EPSILON,
                                             is_training=True)
  x = tf.nn.relu(x)
  return tf.nn.max_pool2d(x, 2, 2, "VALID") if pool else x


def _same_padding(size: int, strides: int) -> tuple[int, int]:
  """(before, after) padding of a 3-wide window, as conv2d's "SAME"."""
  out = -(-size // strides)
  total = max((out - 1) * strides + 3 - size, 0)
  return total // 2, total - total // 2


def _block_patches(x, kernel, gamma, beta, strides: int, pool: bool):
  """One Conv4 block of all models: x [E*B, H, W, Cin] (model-major),
  kernel [E, 3, 3, Cin, F] -> [E*B, H', W', F]. The convolution is the
  input's 3x3 patches [E, B*H'*W', 9*Cin] times the kernel [E, 9*Cin, F]
  (row order (i, j, c), the kernel's own); batch norm normalises each
  model's channels by that model's batch moments (float32), as the fused
  kernel does in training mode."""
  models, _, _, cin, filters = kernel.shape
  _, height, width, _ = x.shape
  (top, bottom), (left, right) = (_same_padding(height, strides),
                                  _same_padding(width, strides))
  out_h, out_w = -(-height // strides), -(-width // strides)
  padded = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
  patches = tf.concat([
      padded[:, i:i + (out_h - 1) * strides + 1:strides,
             j:j + (out_w - 1) * strides + 1:strides]
      for i in range(3) for j in range(3)], axis=-1)
  y = tf.matmul(tf.reshape(patches, [models, -1, 9 * cin]),
                tf.reshape(kernel, [models, 9 * cin, filters]))
  y32 = tf.cast(y, tf.float32)
  mean, variance = tf.nn.moments(y32, axes=[1], keepdims=True)
  scale = gamma[:, None] * tf.math.rsqrt(variance + EPSILON)
  y = tf.cast(y32 * scale + (beta[:, None] - mean * scale), x.dtype)
  y = tf.nn.relu(tf.reshape(y, [-1, out_h, out_w, filters]))
  return tf.nn.max_pool2d(y, 2, 2, "VALID") if pool else y


def features(weights: Sequence[tf.Tensor], images: tf.Tensor, *,
             variant=conv4.Conv4Variant.MAXPOOL,
             formulation=Formulation.GROUPED,
             compute_dtype=tf.float32) -> tf.Tensor:
  """float32 [E, B, D] features of E feature extractors (`weights`: their
  3 * BLOCKS stacked variables) on their own images [E, B, H, W, C],
  computed in `compute_dtype` (module docstring)."""
  variant = conv4.parse_variant(variant)
  formulation = parse_formulation(formulation)
  strided = variant is conv4.Conv4Variant.STRIDED
  strides, pool = (2 if strided else 1), not strided
  images = tf.cast(images, compute_dtype)
  blocks = [(tf.cast(weights[3 * i], compute_dtype), weights[3 * i + 1],
             weights[3 * i + 2]) for i in range(BLOCKS)]
  models = weights[0].shape[0]
  if formulation is Formulation.GROUPED:
    x = _side_by_side(images)
    for kernel, gamma, beta in blocks:
      x = _block_grouped(x, kernel, gamma, beta, strides, pool)
    out = _per_model(x, models)
  elif formulation is Formulation.PATCHES:
    x = tf.reshape(images, [-1, *images.shape[2:]])
    for kernel, gamma, beta in blocks:
      x = _block_patches(x, kernel, gamma, beta, strides, pool)
    out = x
  else:
    outputs = []
    for e in range(models):
      x = images[e]
      for kernel, gamma, beta in blocks:
        x = _block_one(x, kernel[e], gamma[e], beta[e], strides, pool)
      outputs.append(x)
    out = tf.stack(outputs)
  return tf.cast(tf.reshape(out, [models, tf.shape(images)[1], -1]),
                 tf.float32)


def logits(weights: Sequence[tf.Tensor], images: tf.Tensor, *,
           variant=conv4.Conv4Variant.MAXPOOL,
           formulation=Formulation.GROUPED,
           compute_dtype=tf.float32) -> tf.Tensor:
  """float32 [E, B, N] logits of E Conv4 classifiers on their own images
  [E, B, H, W, C]: `features`, then each model's dense head in float32."""
  dense_kernel, dense_bias = weights[3 * BLOCKS:]
  out = features(weights[:3 * BLOCKS], images, variant=variant,
                 formulation=formulation, compute_dtype=compute_dtype)
  return tf.einsum("ebd,edn->ebn", out, dense_kernel) + dense_bias[:, None]


def adam_step(weights, grads, slots, step, *, learning_rate: float,
              beta_1: float = 0.0, beta_2: float = 0.999,
              epsilon: float = 1e-7):
  """Keras' Adam update (`keras.optimizers.Adam.update_step`, dense
  gradients) of stacked variables, elementwise so each model's own;
  `slots` = (m, v) lists, `step` the 0-based step. Returns (weights, slots)."""
  local_step = tf.cast(step + 1, tf.float32)
  alpha = (learning_rate * tf.sqrt(1 - tf.pow(beta_2, local_step)) /
           (1 - tf.pow(beta_1, local_step)))
  new_weights, new_m, new_v = [], [], []
  for var, grad, m, v in zip(weights, grads, *slots):
    m = m + (grad - m) * (1 - beta_1)
    v = v + (tf.square(grad) - v) * (1 - beta_2)
    new_weights.append(var - (m * alpha) / (tf.sqrt(v) + epsilon))
    new_m.append(m)
    new_v.append(v)
  return new_weights, (new_m, new_v)


def fresh_slots(weights) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
  """A fresh Adam's (m, v) for stacked `weights`."""
  return ([tf.zeros_like(v) for v in weights],
          [tf.zeros_like(v) for v in weights])


def train_steps(weights, images, labels, batches, *, learning_rate,
                variant=conv4.Conv4Variant.MAXPOOL,
                formulation=Formulation.GROUPED, compute_dtype=tf.float32
                ) -> tuple[list[tf.Tensor], tf.Tensor]:
  """E models trained together: model e takes Adam (beta1 = 0, a fresh
  optimizer, `reptile_tf.make_inner_optimizer`) steps on its own images
  [E, n, H, W, C] and labels [E, n], step t on the examples batches[e, t]
  (int32 [E, steps, b]). Returns the stacked weights after the last step
  and each model's loss at that step (float32 [E])."""
  weights, _, last_losses = continue_steps(
      weights, fresh_slots(weights), 0, images, labels, batches,
      learning_rate=learning_rate, variant=variant, formulation=formulation,
      compute_dtype=compute_dtype)
  return weights, last_losses


def continue_steps(weights, slots, first_step, images, labels, batches, *,
                   learning_rate, variant=conv4.Conv4Variant.MAXPOOL,
                   formulation=Formulation.GROUPED, compute_dtype=tf.float32):
  """`train_steps` from Adam state `slots` after `first_step` steps (an
  evaluation fine-tunes in chunks between its scores). Returns (weights,
  slots, float32 [E] losses of the last step)."""
  slots = (list(slots[0]), list(slots[1]))
  weights = list(weights)
  last_losses = tf.zeros([weights[0].shape[0]])
  for step in tf.range(tf.shape(batches)[1]):
    idx = batches[:, step]
    x = tf.gather(images, idx, batch_dims=1)
    y = tf.gather(labels, idx, batch_dims=1)
    with tf.GradientTape() as tape:
      tape.watch(weights)
      out = logits(weights, x, variant=variant, formulation=formulation,
                   compute_dtype=compute_dtype)
      last_losses = tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                         logits=out), axis=1)
      # The sum of the models' mean losses: each model's gradient is its own.
      loss = tf.reduce_sum(last_losses)
    grads = tape.gradient(loss, weights)
    weights, slots = adam_step(weights, grads, slots, first_step + step,
                               learning_rate=learning_rate)
  return weights, slots, last_losses
