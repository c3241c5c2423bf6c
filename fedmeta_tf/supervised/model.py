"""The supervised-setting CNNs (pruning paper, Section V-A and V-E).

    [conv kxk(f_i), ReLU, max-pool 2x2] x len(filters) -> flatten
    -> [dense(h_j), ReLU] x len(hidden) -> dense(num_labels) logits

The paper's models are instances, set by the flagfiles: MNIST "2
convolutional layers and 2 fully connected layers" with 20 and 50 channels
(Tables I, II, IV; `configs/mnist_*`) and the "concise" 8 / 16 model of
Table III, both with 5x5 valid convolutions and a 500-unit hidden layer as
in the LeNet-5 variant those channel counts come from; Fashion-MNIST 3 conv
+ 2 FC (Table V); CIFAR-10 4 conv + 3 FC (Table VI). The paper gives only
the layer counts (and MNIST's channels): kernel sizes and the other widths
are ours.

`head="gap"` (`"gmp"`) replaces the last max-pool and the flatten by a
global average (max) pool, so the dense layers see one number per channel of
the last conv layer: a backdoor must then live in channels (what the pruning
defense removes) rather than in the dense layer's weights for one image
position. With the flatten head, a key in a blank corner can be read by
fc1's weights for the corner positions of any channel (conv kernels are
shared across positions), so no channel of the last conv layer need be a
"backdoor neuron" (measured on the Omniglot proxy:
docs/results/pruning.md).

No batch norm, so the model's weights are exactly its trainable variables
(what FedAvg averages) and a pruned channel stays silent. The last conv
layer (`conv<L>`, activations at `relu<L>`, L = len(filters)) is where the
pruning defense works (`fedmeta_tf/defenses/pruning/surgery.py`).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

HEADS = ("flatten", "gap", "gmp")
PADDINGS = ("same", "valid")


def last_conv_name(model: tf.keras.Model) -> str:
  """Name of the model's last conv layer (the one the defense prunes)."""
  convs = [l.name for l in model.layers
           if isinstance(l, tf.keras.layers.Conv2D)]
  if not convs:
    raise ValueError(f"model {model.name} has no conv layer")
  return convs[-1]


def last_activation_name(model: tf.keras.Model) -> str:
  """Name of the ReLU after the last conv layer (`relu<L>`)."""
  return "relu" + last_conv_name(model)[len("conv"):]


def _check_architecture(num_labels, filters, hidden, head, kernel_size,
                        padding) -> None:
  if head not in HEADS:
    raise ValueError(f"head must be one of {HEADS}, got {head!r}")
  if padding not in PADDINGS:
    raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
  if not filters or min(filters) <= 0:
    raise ValueError(f"filters must be one or more positive ints, got "
                     f"{filters}")
  if not hidden or min(hidden) <= 0:
    raise ValueError(f"hidden must be one or more positive ints, got {hidden}")
  if num_labels < 2 or kernel_size < 1:
    raise ValueError(f"need num_labels >= 2 and kernel_size >= 1, got "
                     f"{num_labels}, {kernel_size}")


def build_supervised_cnn(input_shape, num_labels: int, *,
                         filters: Sequence[int] = (16, 32, 64),
                         hidden: int | Sequence[int] = (128,),
                         head: str = "flatten", kernel_size: int = 3,
                         padding: str = "same",
                         seed: int = 0) -> tf.keras.Model:
  """The classifier; outputs logits.

  Layer i's initialiser (conv layers first, then the dense layers, then the
  logits) uses seed + i, so a model keeps its initial weights when layers
  are only widened.

  Args:
    filters: channels of the conv layers (one or more).
    hidden: units of the hidden dense layers (an int: one layer).
    head: "flatten" (max-pool, flatten), "gap" (global average pool) or
      "gmp" (global max pool) after the last conv layer.
    kernel_size, padding: of every conv layer ("same" or "valid").
  """
  hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
  _check_architecture(num_labels, filters, hidden, head, kernel_size, padding)
  init = lambda i: tf.keras.initializers.GlorotUniform(seed=seed + i)
  inputs = tf.keras.Input(shape=tuple(input_shape), name="images")
  x = inputs
  last = len(filters) - 1
  too_small = ValueError(
      f"input {tuple(input_shape)} is too small for {len(filters)} conv + "
      f"pool layers of kernel {kernel_size} ({padding} padding)")
  for i, f in enumerate(filters):
    if padding == "valid" and min(x.shape[1:3]) < kernel_size:
      raise too_small
    x = tf.keras.layers.Conv2D(f, kernel_size, padding=padding,
                               kernel_initializer=init(i),
                               name=f"conv{i + 1}")(x)
    x = tf.keras.layers.ReLU(name=f"relu{i + 1}")(x)
    if i < last or head == "flatten":
      if min(x.shape[1:3]) < 2:
        raise too_small
      x = tf.keras.layers.MaxPool2D(2, name=f"pool{i + 1}")(x)
  if head == "gap":
    x = tf.keras.layers.GlobalAveragePooling2D(name="gap")(x)
  elif head == "gmp":
    x = tf.keras.layers.GlobalMaxPooling2D(name="gmp")(x)
  else:
    x = tf.keras.layers.Flatten(name="flatten")(x)
  for j, units in enumerate(hidden):
    x = tf.keras.layers.Dense(units, activation="relu",
                              kernel_initializer=init(len(filters) + j),
                              name=f"fc{j + 1}")(x)
  logits = tf.keras.layers.Dense(
      num_labels, kernel_initializer=init(len(filters) + len(hidden)),
      name="logits")(x)
  return tf.keras.Model(inputs, logits, name="supervised_cnn")
