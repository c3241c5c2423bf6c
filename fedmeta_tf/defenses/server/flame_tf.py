"""FLAME (Nguyen et al., USENIX Security 2022), in pure TensorFlow.

"FLAME: Taming Backdoors in Federated Learning", Algorithm 1 (Section 4):
one round's n client models are

  1. filtered (Alg. 1 lines 7-8): pairwise cosine distances
     c_ij = 1 - cos(W_i, W_j), HDBSCAN with min cluster size n/2 + 1; only
     the models of the majority cluster are admitted (the others are
     outliers);
  2. clipped (lines 9-12): e_i = ||G_{t-1} - W_i||, S_t = median(e_1..e_n)
     over all n, each admitted model moved to within S_t of G_{t-1}:
     W_i^c = G_{t-1} + (W_i - G_{t-1}) * min(1, S_t / e_i);
  3. averaged (line 13): G_t = mean of the L admitted clipped models;
  4. noised (lines 14-15): G_t += N(0, sigma^2), sigma = lambda * S_t
     (lambda = 0.001 for image classification, Section 5).

Here the server gets the updates u_i = W_i - G_{t-1} (this is all an
aggregation process sees, `aggregation/aggregators.py`), so the round's
result is the aggregated update; steps 2-4 are the same in updates
(e_i = ||u_i||). Deviations from the paper, all deliberate:

* Step 1 clusters the updates u_i, not the models W_i. The cosine of two
  models is dominated by the shared G_{t-1} (every pair is close to 1 late
  in training), the cosine of updates is not; and the TFF aggregation
  process never sees G_{t-1}, so it could not cluster models. (Several
  public re-implementations do the same.)
* HDBSCAN is not a dependency. `majority_cluster` computes in closed form
  what HDBSCAN(metric=precomputed, min_cluster_size=m = floor(n/2) + 1,
  min_samples=1, allow_single_cluster=True) labels, the settings public
  re-implementations of FLAME use: with min_samples=1 the mutual
  reachability distance is the distance itself, so the hierarchy is
  single linkage; a split can have at most one child with >= m > n/2
  points, so the condensed tree has the root as its only cluster, and its
  members are the points still in it when it dissolves, i.e. the single-
  linkage component that first reaches m points as the linkage threshold
  grows. That component is the admitted set; it always has >= m members
  (the paper's "majority"). Exact for any n; ties are resolved by `<=`
  (every point at the deciding distance is admitted).
* The noise is `tf.random.stateless_normal` seeded by (noise_seed, the bits
  of S_t): both drivers draw the same noise for the same updates, and S_t
  changes from round to round. Someone who knows every update can predict
  it; FLAME's noise is a smoothing step, not a privacy mechanism here.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from fedmeta_tf.defenses.server import robust_tf

Stacked = Sequence[tf.Tensor]  # per weight tensor: [n, *shape]

DEFAULT_NOISE_LAMBDA = 0.001  # FLAME, Section 5: image classification


def cosine_similarities(vectors: tf.Tensor) -> tf.Tensor:
  """[n, n] cosine similarities of the rows of [n, d] `vectors`, exactly
  symmetric; a zero row has similarity 0 with every row (itself included),
  as sklearn's `cosine_similarity` gives."""
  norms = tf.norm(vectors, axis=1, keepdims=True)
  unit = tf.math.divide_no_nan(vectors, norms)
  similarity = tf.matmul(unit, unit, transpose_b=True)
  return (similarity + tf.transpose(similarity)) / 2.0


def cosine_distances(vectors: tf.Tensor) -> tf.Tensor:
  """FLAME Alg. 1 line 7: c_ij = 1 - cos(v_i, v_j), in [0, 2], c_ii = 0."""
  distances = tf.clip_by_value(1.0 - cosine_similarities(vectors), 0.0, 2.0)
  return tf.linalg.set_diag(distances, tf.zeros_like(distances[:, 0]))


def minimax_distances(distances: tf.Tensor) -> tf.Tensor:
  """[n, n]: for each pair, the smallest possible largest step of a path
  between them (Floyd-Warshall in the (min, max) semiring). i and j are in
  one single-linkage component at threshold r iff minimax[i, j] <= r."""
  n = tf.shape(distances)[0]

  def step(k, minimax):
    through_k = tf.maximum(minimax[:, k:k + 1], minimax[k:k + 1, :])
    return k + 1, tf.minimum(minimax, through_k)

  _, minimax = tf.while_loop(lambda k, _: k < n, step,
                             (tf.constant(0), distances))
  return minimax


def majority_cluster(distances: tf.Tensor) -> tf.Tensor:
  """FLAME Alg. 1 line 8: bool [n], the clients HDBSCAN admits.

  HDBSCAN(min_cluster_size=m, min_samples=1, allow_single_cluster=True) with
  m = floor(n/2) + 1 on precomputed `distances` (module docstring): the
  single-linkage component that first reaches m members. For each client i
  the component holding i reaches m members at threshold r_i = the m-th
  smallest of minimax[i, :] (itself, at 0, included); the admitted set is
  the component at r* = min_i r_i.
  """
  minimax = minimax_distances(distances)
  n = tf.shape(minimax)[0]
  m = n // 2 + 1
  reach = tf.gather(tf.sort(minimax, axis=1), m - 1, axis=1)
  first = tf.argmin(reach, output_type=tf.int32)
  return minimax[first] <= reach[first]


def _clip_bound(norms: tf.Tensor) -> tf.Tensor:
  """S_t (Alg. 1 line 10): the median of all n update norms (even n: the
  mean of the two middle ones, as `robust_tf.coordinate_median`)."""
  return robust_tf.coordinate_median([norms])[0]


def _noise_like(update: list[tf.Tensor], sigma: tf.Tensor, seed: tf.Tensor
                ) -> list[tf.Tensor]:
  """N(0, sigma^2) per coordinate of `update`, one stateless draw."""
  sizes = tf.stack([tf.size(u) for u in update])
  flat = tf.random.stateless_normal([tf.reduce_sum(sizes)], seed=seed)
  pieces = tf.split(flat, sizes, num=len(update))
  return [sigma * tf.reshape(p, tf.shape(u)) for p, u in zip(pieces, update)]


def flame(stacked: Stacked, *, noise_lambda: float = DEFAULT_NOISE_LAMBDA,
          noise_seed: int = 0) -> tuple[list[tf.Tensor], tf.Tensor, tf.Tensor]:
  """FLAME's aggregate of one round's updates (Alg. 1 lines 7-15, on updates).

  Args:
    stacked: per weight tensor, the n clients' updates [n, *shape].
    noise_lambda: lambda; sigma = lambda * S_t. 0 adds no noise.
    noise_seed: first half of the stateless noise seed.

  Returns:
    (aggregated update, admitted count L (int32), clip bound S_t (float32)).
  """
  if not noise_lambda >= 0:
    raise ValueError(f"noise_lambda must be >= 0, got {noise_lambda}")
  stacked = [tf.convert_to_tensor(s, tf.float32) for s in stacked]
  vectors = robust_tf.flatten_clients(stacked)
  admitted = tf.cast(majority_cluster(cosine_distances(vectors)), tf.float32)
  count = tf.reduce_sum(admitted)
  norms = tf.norm(vectors, axis=1)
  clip_bound = _clip_bound(norms)
  # min(1, S_t / e_i); e_i > S_t >= 0 implies e_i > 0.
  factors = tf.where(norms > clip_bound,
                     clip_bound / tf.maximum(norms, 1e-30), 1.0)
  coefficients = factors * admitted / count
  update = [tf.tensordot(coefficients, s, axes=1) for s in stacked]
  if noise_lambda > 0:
    seed = tf.stack([tf.constant(noise_seed, tf.int32),
                     tf.bitcast(clip_bound, tf.int32)])
    noise = _noise_like(update, noise_lambda * clip_bound, seed)
    update = [u + z for u, z in zip(update, noise)]
  return update, tf.cast(count, tf.int32), clip_bound
