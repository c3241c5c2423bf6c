"""Weight surgery on the last conv layer: channel masks and extreme weights
(pruning paper, Section IV and IV-C).

Models are handled as lists of weights (`model.trainable_variables` order),
like everything the federated process moves. A `LayerTarget` names which
entries of that list belong to the pruned layer:

* the conv kernel [kh, kw, in, C] (its last axis is the channel), and
* per-channel vectors that must be zeroed with it so the channel is silent:
  the conv bias (supervised CNN), or Conv4's batch-norm gamma and beta
  (BatchStatNorm maps an all-zero channel to beta, so beta must go too).

Pruning a channel zeroes all of them; the ReLU that follows then outputs 0
and passes no gradient, so the channel stays pruned through fine-tuning
(the fine-tuning driver re-applies the mask anyway).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf

from fedmeta_tf.supervised import model as model_lib


@dataclasses.dataclass(frozen=True)
class LayerTarget:
  """Indices into the model's trainable-variable list.

  Attributes:
    kernel: index of the conv kernel [kh, kw, in, C].
    channel_vectors: indices of [C] vectors zeroed with a pruned channel.
    activation_layer: name of the layer whose output is the channel's
      activation (post-ReLU), found by `activation_model`.
  """

  kernel: int
  channel_vectors: tuple[int, ...]
  activation_layer: str


def _index_of(model: tf.keras.Model, variable) -> int:
  for i, v in enumerate(model.trainable_variables):
    if v is variable:
      return i
  raise ValueError(f"{variable.name} is not a trainable variable of the model")


def _find_layer(model: tf.keras.Model, name: str):
  """A layer by name, looking into nested sub-models (Conv4's features)."""
  for layer in model.layers:
    if layer.name == name:
      return layer
    if isinstance(layer, tf.keras.Model):
      try:
        return _find_layer(layer, name)
      except ValueError:
        continue
  raise ValueError(f"model {model.name} has no layer {name!r}")


def supervised_target(model: tf.keras.Model) -> LayerTarget:
  """The supervised CNN's last conv layer (kernel and bias)."""
  layer = _find_layer(model, model_lib.last_conv_name(model))
  return LayerTarget(kernel=_index_of(model, layer.kernel),
                     channel_vectors=(_index_of(model, layer.bias),),
                     activation_layer=model_lib.last_activation_name(model))


def conv4_target(model: tf.keras.Model) -> LayerTarget:
  """Conv4's conv4 (no bias) with the batch-norm gamma/beta of norm4."""
  conv, norm = _find_layer(model, "conv4"), _find_layer(model, "norm4")
  return LayerTarget(kernel=_index_of(model, conv.kernel),
                     channel_vectors=(_index_of(model, norm.gamma),
                                      _index_of(model, norm.beta)),
                     activation_layer="relu4")


def activation_model(model: tf.keras.Model,
                     target: LayerTarget) -> tf.keras.Model:
  """images -> the target layer's activations (shares the model's weights)."""
  layer = _find_layer(model, target.activation_layer)
  owner = model
  for sub in model.layers:
    if isinstance(sub, tf.keras.Model) and target.activation_layer in [
        l.name for l in sub.layers]:
      owner = sub
  return tf.keras.Model(owner.inputs, layer.output)


def num_channels(weights: Sequence[np.ndarray], target: LayerTarget) -> int:
  return int(np.shape(weights[target.kernel])[-1])


def apply_channel_mask(weights: Sequence[np.ndarray], target: LayerTarget,
                       pruned: Sequence[int]) -> list[np.ndarray]:
  """A copy of `weights` with channels `pruned` of the target layer zeroed."""
  out = [np.array(w, copy=True) for w in weights]
  pruned = np.asarray(list(pruned), np.int64)
  channels = num_channels(weights, target)
  if pruned.size and (pruned.min() < 0 or pruned.max() >= channels):
    raise ValueError(f"pruned channels must be in [0, {channels}), got "
                     f"{pruned.tolist()}")
  out[target.kernel][..., pruned] = 0.0
  for index in target.channel_vectors:
    out[index][pruned] = 0.0
  return out


def zero_extreme_weights(weights: Sequence[np.ndarray], target: LayerTarget,
                         delta: float, pruned: Sequence[int] = ()
                         ) -> tuple[list[np.ndarray], int]:
  """Zeroes kernel weights outside mu +- delta * sigma (Section IV-C).

  mu and sigma are over the kernel's weights in the channels not pruned
  (pruned channels are all zeros and would shrink sigma).

  Returns:
    (new weights, number of weights zeroed).
  """
  if not delta > 0:
    raise ValueError(f"delta must be positive, got {delta}")
  out = [np.array(w, copy=True) for w in weights]
  kernel = out[target.kernel]
  alive = np.ones(kernel.shape[-1], bool)
  alive[np.asarray(list(pruned), np.int64)] = False
  values = kernel[..., alive]
  if values.size == 0:
    return out, 0
  mu, sigma = float(values.mean()), float(values.std())
  extreme = np.abs(kernel - mu) > delta * sigma
  extreme[..., ~alive] = False
  kernel[extreme] = 0.0
  return out, int(extreme.sum())
