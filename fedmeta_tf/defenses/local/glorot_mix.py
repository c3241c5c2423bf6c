"""The noisy start of the local defense (main paper, Algorithm 2, lines 2-5).

    theta_g <- a fresh Glorot initialisation of the meta-model architecture
    theta'  <- delta * theta_G + (1 - delta) * theta_g

"A fresh initialisation of the architecture" is taken literally: a new Conv4
is built with a noise seed and *every* one of its trainable variables is
mixed in, each with its own initial value. Conv and dense kernels are
Glorot-uniform draws; batch-norm gamma starts at ones and beta at zeros
(Keras' initialisers, what the meta-model itself started from), so gamma'
= delta * gamma_G + (1 - delta) and beta' = delta * beta_G: batch norm is
pulled toward the identity, not randomised. The dense bias starts at zeros.
The matching and ProtoNet heads keep only the feature extractor of theta'
(line 5); supervised fine-tuning after the mix (Experiment 3(c)) keeps all
of it.

`--deltas=auto` (`auto_delta.py`, our rule, not the paper's) passes one
delta per variable instead of one for all.

The noise seed is derived from (seed, client) with numpy's SeedSequence, so
that a client's draw never coincides with the layer seeds of the global
model's own initialisation (`build_conv4` seeds layer i with seed + i).
"""

from __future__ import annotations

import numpy as np

from fedmeta_tf.meta import weights as w
from fedmeta_tf.models import conv4


def noise_seed(seed: int, client: int) -> int:
  """The Glorot seed of `client`'s draw under run seed `seed`."""
  if seed < 0 or client < 0:
    raise ValueError(f"seed and client must be >= 0, got {seed}, {client}")
  entropy = np.random.SeedSequence([seed, client, 0x610407])
  return int(entropy.generate_state(1, np.uint32)[0] >> 4)


def fresh_conv4_weights(image_shape, num_classes: int, *, variant: str,
                        filters: int, seed: int) -> list[np.ndarray]:
  """theta_g: the trainable weights of a newly initialised Conv4."""
  model = conv4.build_conv4(tuple(image_shape), num_classes, variant=variant,
                            filters=filters, seed=seed)
  return [v.numpy() for v in model.trainable_variables]


def glorot_mix(global_weights, noise_weights, *, delta) -> list:
  """theta' = delta * theta_G + (1 - delta) * theta_g, variable by variable.

  Args:
    global_weights: theta_G, a list of arrays (Conv4 trainable order).
    noise_weights: theta_g, same shapes.
    delta: in [0, 1]; 1 keeps theta_G, 0 discards it. A sequence gives each
      variable its own delta (`auto_delta.py`'s per-layer rule).
  """
  per_variable = np.ndim(delta) > 0
  deltas = list(delta) if per_variable else [delta] * len(global_weights)
  for d in (deltas if per_variable else [delta]):
    if not 0.0 <= d <= 1.0:
      raise ValueError(f"delta must be in [0, 1], got {d}")
  if len(global_weights) != len(noise_weights):
    raise ValueError(f"theta_G has {len(global_weights)} variables, theta_g "
                     f"{len(noise_weights)}: not the same architecture")
  if len(deltas) != len(global_weights):
    raise ValueError(f"{len(deltas)} deltas for {len(global_weights)} "
                     "variables")
  for a, b in zip(global_weights, noise_weights):
    if tuple(np.shape(a)) != tuple(np.shape(b)):
      raise ValueError(f"shape mismatch between theta_G and theta_g: "
                       f"{np.shape(a)} vs {np.shape(b)}")
  # interpolate(old, new, eps) = (1 - eps) old + eps new, with old = theta_g.
  return [np.asarray(w.interpolate([np.asarray(noise)], [np.asarray(glob)],
                                   d)[0], np.float32)
          for glob, noise, d in zip(global_weights, noise_weights, deltas)]


def mixed_weights(global_weights, *, image_shape, num_classes: int,
                  variant: str, filters: int, delta: float, seed: int,
                  client: int) -> list[np.ndarray]:
  """theta' of the whole Conv4 for `client` (Algorithm 2, lines 3-4)."""
  noise = fresh_conv4_weights(image_shape, num_classes, variant=variant,
                              filters=filters, seed=noise_seed(seed, client))
  return glorot_mix(global_weights, noise, delta=delta)


def feature_part(conv4_weights, *, image_shape, num_classes: int, variant: str,
                 filters: int) -> list[np.ndarray]:
  """The feature extractor's share of a Conv4's weights (Algorithm 2, line 5)."""
  model = conv4.build_conv4(tuple(image_shape), num_classes, variant=variant,
                            filters=filters)
  if len(conv4_weights) != len(model.trainable_variables):
    raise ValueError(f"expected {len(model.trainable_variables)} Conv4 "
                     f"variables, got {len(conv4_weights)}")
  w.assign(model.trainable_variables, list(conv4_weights))
  return [v.numpy() for v in conv4.feature_extractor(model).trainable_variables]
