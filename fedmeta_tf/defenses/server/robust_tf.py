"""Robust statistics of client updates, in pure TensorFlow.

The server-side defenses of Experiment 3(e) (main paper, Section 4.2,
Figs 33-34) and the Byzantine-robust rules the pruning paper cites
(Section II-B): each takes the individual updates of one round, stacked per
weight tensor (`stacked[k]` has shape [n, *shape_k] for n clients), and
returns one aggregated update with the shapes of a single update.

    coordinate_median   Yin et al. 2018: per coordinate, the median of n
    trimmed_mean        Yin et al. 2018: per coordinate, drop the
                        floor(beta * n) largest and smallest, average the rest
    krum / multi_krum   Blanchard et al. 2017: score each update by the sum
                        of squared distances to its n - f - 2 nearest other
                        updates; Krum returns the best, multi-Krum averages
                        the m best
    clip_by_global_norm norm-bound clipping of one update (Sun et al. 2019)

The TFF aggregation factories (`robust_tff.py`) and the in-process driver
(through the aggregator objects, `fedmeta_tf/aggregation/aggregators.py`)
both call these functions, so both runtimes compute the same thing. All of
them need every client's update at the server: they cannot run under secure
aggregation.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

Stacked = Sequence[tf.Tensor]  # per weight tensor: [n, *shape]


def coordinate_median(stacked: Stacked) -> list[tf.Tensor]:
  """Coordinate-wise median over clients (mean of the two middle values for
  even n, like numpy)."""
  return [_median_axis0(s) for s in stacked]


def _median_axis0(values: tf.Tensor) -> tf.Tensor:
  n = tf.shape(values)[0]
  ordered = tf.sort(values, axis=0)
  lower = ordered[(n - 1) // 2]
  upper = ordered[n // 2]
  return (lower + upper) / 2.0


def trimmed_mean(stacked: Stacked, *, trim_fraction: float) -> list[tf.Tensor]:
  """Coordinate-wise beta-trimmed mean: per coordinate, the mean of the values
  left after dropping the k = floor(trim_fraction * n) largest and k smallest.

  Raises:
    ValueError: trim_fraction outside [0, 0.5).
  """
  if not 0.0 <= trim_fraction < 0.5:
    raise ValueError(f"trim_fraction must be in [0, 0.5), got {trim_fraction}")
  result = []
  for s in stacked:
    n = tf.shape(s)[0]
    k = tf.cast(tf.floor(trim_fraction * tf.cast(n, tf.float32)), tf.int32)
    # n - 2k >= 1 always holds for trim_fraction < 0.5.
    kept = tf.sort(s, axis=0)[k:n - k]
    result.append(tf.reduce_mean(kept, axis=0))
  return result


def flatten_clients(stacked: Stacked) -> tf.Tensor:
  """[n, d]: each client's update as one vector."""
  n = tf.shape(stacked[0])[0]
  return tf.concat([tf.reshape(s, tf.stack([n, -1])) for s in stacked], axis=1)


def krum_scores(stacked: Stacked, *, num_byzantine: int) -> tf.Tensor:
  """Krum score of each update: the sum of squared L2 distances to its
  n - f - 2 nearest other updates (at least 1; Blanchard et al. need
  n > 2f + 2, with fewer clients the score degrades to fewer neighbours).

  Returns:
    float32 [n].
  """
  if num_byzantine < 0:
    raise ValueError(f"num_byzantine (f) must be >= 0, got {num_byzantine}")
  vectors = flatten_clients(stacked)
  n = tf.shape(vectors)[0]
  sq_norms = tf.reduce_sum(tf.square(vectors), axis=1)
  distances = (sq_norms[:, None] + sq_norms[None, :]
               - 2.0 * tf.matmul(vectors, vectors, transpose_b=True))
  distances = tf.maximum(distances, 0.0)
  # A client is not its own neighbour: push the diagonal past every distance.
  distances += tf.linalg.diag(tf.fill([n], float("inf")))
  neighbours = tf.clip_by_value(n - num_byzantine - 2, 1, tf.maximum(n - 1, 1))
  nearest = -tf.math.top_k(-distances, k=neighbours).values
  # n == 1: no neighbours at all, every score is +inf; make it 0.
  nearest = tf.where(tf.math.is_inf(nearest), tf.zeros_like(nearest), nearest)
  return tf.reduce_sum(nearest, axis=1)


def krum_select(stacked: Stacked, *, num_byzantine: int,
                num_selected: int | None = None) -> tf.Tensor:
  """Indices (int32 [m]) of the m updates with the lowest Krum scores.

  Args:
    num_selected: m; None means n - f (multi-Krum's usual choice). Capped to
      [1, n].
  """
  if num_selected is not None and num_selected < 1:
    raise ValueError(f"num_selected (m) must be >= 1, got {num_selected}")
  scores = krum_scores(stacked, num_byzantine=num_byzantine)
  n = tf.shape(scores)[0]
  m = n - num_byzantine if num_selected is None else num_selected
  m = tf.clip_by_value(m, 1, n)
  return tf.math.top_k(-scores, k=m).indices


def multi_krum(stacked: Stacked, *, num_byzantine: int,
               num_selected: int | None = None) -> list[tf.Tensor]:
  """The mean of the m updates with the best Krum scores (m = 1: Krum;
  None: m = n - f)."""
  chosen = krum_select(stacked, num_byzantine=num_byzantine,
                       num_selected=num_selected)
  return [tf.reduce_mean(tf.gather(s, chosen), axis=0) for s in stacked]


def krum(stacked: Stacked, *, num_byzantine: int) -> list[tf.Tensor]:
  """The single update with the best Krum score."""
  return multi_krum(stacked, num_byzantine=num_byzantine, num_selected=1)


def clip_by_global_norm(update: Sequence[tf.Tensor], clip_norm
                        ) -> tuple[list[tf.Tensor], tf.Tensor]:
  """Scales one update to global L2 norm <= clip_norm, as TFF's
  `clipping_factory` does; returns (clipped update, its original norm)."""
  norm = tf.linalg.global_norm(list(update))
  factor = tf.where(norm > clip_norm, clip_norm / norm, 1.0)
  return [u * factor for u in update], norm
