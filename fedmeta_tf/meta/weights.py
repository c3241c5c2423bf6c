"""Small vector functions on model weights (lists of tensors).

The Reptile update reads like the paper with these (openai/supervised-reptile,
`variables.py`): theta_i <- interpolate(theta_i, average(theta_i^j), eps);
u_i = subtract(theta_i, theta_G); theta_G <- add(theta_G, scale(u, alpha)).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import tensorflow as tf

Weights = list  # list[tf.Tensor], in `model.trainable_variables` order.


def interpolate(old: Weights, new: Weights, epsilon) -> Weights:
  """(1 - epsilon) * old + epsilon * new."""
  return [a + epsilon * (b - a) for a, b in zip(old, new)]


def add(a: Weights, b: Weights) -> Weights:
  return [x + y for x, y in zip(a, b)]


def subtract(a: Weights, b: Weights) -> Weights:
  return [x - y for x, y in zip(a, b)]


def scale(a: Weights, factor) -> Weights:
  return [factor * x for x in a]


def average(weight_lists: Sequence[Weights]) -> Weights:
  return [tf.add_n(list(ws)) / len(weight_lists) for ws in zip(*weight_lists)]


def zeros_like(a: Weights) -> Weights:
  return [tf.zeros_like(x) for x in a]


def read(variables) -> Weights:
  """Current values of variables, as tensors."""
  return [tf.identity(v) for v in variables]


def assign(variables, values: Weights) -> None:
  for var, value in zip(variables, values):
    var.assign(value)


def global_norm(a: Weights) -> tf.Tensor:
  return tf.linalg.global_norm(a)


def digest(weights) -> str:
  """sha256 (hex) of the weights as float32 bytes, in order: which model a
  cached result or a checkpoint belongs to."""
  hashed = hashlib.sha256()
  for v in weights:
    hashed.update(np.ascontiguousarray(v, np.float32).tobytes())
  return hashed.hexdigest()
