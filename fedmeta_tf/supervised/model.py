"""The supervised-setting CNN (pruning paper, Section V: three convolutional
layers and two fully connected layers for Fashion-MNIST).

    [conv3x3(f_i), ReLU, max-pool 2x2] x 3 -> flatten -> dense(hidden), ReLU
    -> dense(num_labels) logits

`head="gap"` (`"gmp"`) replaces the last max-pool and the flatten by a
global average (max) pool, so the dense layers see one number per channel of
the last conv layer: a backdoor must then live in channels (what the pruning
defense removes) rather than in the dense layer's weights for one image
position. With the flatten head, a key in a blank corner is read by fc1's
weights for the corner positions of any channel (conv kernels are shared
across positions), so no channel of the last conv layer is a "backdoor
neuron" and pruning cannot remove it (measured: docs/results/pruning.md).

No batch norm, so the model's weights are exactly its trainable variables
(what FedAvg averages) and a pruned channel stays silent. The last conv
layer (`LAST_CONV`, activations at `LAST_ACTIVATION`) is where the pruning
defense works (`fedmeta_tf/defenses/pruning`).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

LAST_CONV = "conv3"
LAST_ACTIVATION = "relu3"
HEADS = ("flatten", "gap", "gmp")


def build_supervised_cnn(input_shape, num_labels: int, *,
                         filters: Sequence[int] = (16, 32, 64),
                         hidden: int = 128, head: str = "flatten",
                         seed: int = 0) -> tf.keras.Model:
  """The classifier; outputs logits. Layer i's initialisers use seed + i.

  Args:
    head: "flatten" (max-pool, flatten), "gap" (global average pool) or
      "gmp" (global max pool) after the last conv layer.
  """
  if head not in HEADS:
    raise ValueError(f"head must be one of {HEADS}, got {head!r}")
  if len(filters) != 3 or min(filters) <= 0:
    raise ValueError(f"filters must be three positive ints, got {filters}")
  if num_labels < 2 or hidden <= 0:
    raise ValueError(f"need num_labels >= 2 and hidden > 0, got {num_labels}, "
                     f"{hidden}")
  init = lambda i: tf.keras.initializers.GlorotUniform(seed=seed + i)
  inputs = tf.keras.Input(shape=tuple(input_shape), name="images")
  x = inputs
  for i, f in enumerate(filters):
    x = tf.keras.layers.Conv2D(f, 3, padding="same", kernel_initializer=init(i),
                               name=f"conv{i + 1}")(x)
    x = tf.keras.layers.ReLU(name=f"relu{i + 1}")(x)
    if i < 2 or head == "flatten":
      x = tf.keras.layers.MaxPool2D(2, name=f"pool{i + 1}")(x)
  if head == "gap":
    x = tf.keras.layers.GlobalAveragePooling2D(name="gap")(x)
  elif head == "gmp":
    x = tf.keras.layers.GlobalMaxPooling2D(name="gmp")(x)
  else:
    x = tf.keras.layers.Flatten(name="flatten")(x)
  x = tf.keras.layers.Dense(hidden, activation="relu", kernel_initializer=init(3),
                            name="fc1")(x)
  logits = tf.keras.layers.Dense(num_labels, kernel_initializer=init(4),
                                 name="logits")(x)
  return tf.keras.Model(inputs, logits, name="supervised_cnn")
