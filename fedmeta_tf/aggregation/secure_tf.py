"""The secure-sum mean's per-update arithmetic, in pure TensorFlow.

What the papers' aggregation (main paper, Section 2.1: the server learns only
the sum of the updates) does to each client's update before the sum, for the
in-process driver; the TFF form (`secure_tff.py`) calls `screen_update` too.

    screen_update        a NaN/Inf or absurd-norm update is excluded (zeros,
                         accepted = 0) before it can corrupt the sum
    clip_like_secure_sum TFF's `SecureSumFactory` clips every coordinate to
                         [-bound, bound] (its 32-bit quantisation is below
                         float32 resolution of the result)
    count_clipped        whether an update had a coordinate clipped above /
                         below the bound, as `SecureSumFactory` counts
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

DEFAULT_MAX_UPDATE_NORM = 1e6
DEFAULT_SECURE_SUM_BOUND = 10.0


def screen_update(update, max_update_norm: float):
  """(update or zeros, accepted 0/1) of one client's update (tensors)."""
  finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(u)) for u in update])
  norm = tf.linalg.global_norm([tf.where(tf.math.is_finite(u), u,
                                         tf.zeros_like(u)) for u in update])
  accepted = tf.logical_and(finite, norm <= max_update_norm)
  screened = [tf.where(accepted, u, tf.zeros_like(u)) for u in update]
  return screened, tf.cast(accepted, tf.int32)


def clip_like_secure_sum(update, secure_sum_bound: float):
  """One update clipped coordinate-wise to [-bound, bound]."""
  return [tf.clip_by_value(u, -secure_sum_bound, secure_sum_bound)
          for u in update]


def count_clipped(update, secure_sum_bound: float) -> tuple[int, int]:
  """(upper, lower) clipped flags of one update, as SecureSumFactory counts."""
  upper = any(bool(np.max(u) > secure_sum_bound) for u in update)
  lower = any(bool(np.min(u) < -secure_sum_bound) for u in update)
  return int(upper), int(lower)
