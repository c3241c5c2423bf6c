"""FoolsGold (Fung et al., RAID 2020), per round, in pure TensorFlow.

"The Limitations of Federated Learning in Sybil Settings", Algorithm 1
(Section 4): sybils pushing one backdoor send updates more alike than honest
clients' (whose data differ), so each client is down-weighted by its
largest cosine similarity to another client:

  line 6-7   cs_ij = cos(H_i, H_j), v_i = max_j cs_ij          (j != i)
  line 9-11  pardoning: if v_j > v_i, cs_ij *= v_i / v_j
  line 12    alpha_i = 1 - max_j cs_ij, clipped to [0, 1]
  line 13    alpha = alpha / max(alpha)                (a 1 becomes 0.99)
  line 14    alpha_i = kappa (ln[alpha_i / (1 - alpha_i)] + 0.5), clipped
             to [0, 1] (kappa = 1 in the paper's experiments)
  line 15    w_{t+1} = w_t + sum_i alpha_i Delta_i

as in the authors' reference code (`foolsgold()`, github.com/DistributedML/
FoolsGold): cs = cosine_similarity - I, so the diagonal is 0 and v_i >= 0
(a client whose every similarity is negative gets alpha_i = 1, and the
pardoning never divides by 0).

Deviations, all deliberate:

* Per round, no history: H_i here is client i's update of this round, not
  the sum of its updates over all past rounds (Alg. 1 line 4). The
  aggregation interface gets the reporting clients' updates without their
  identities (in-process `aggregate(updates, weights)`; in TFF a CLIENTS-
  placed value is an unordered multiset, and the aggregation state lives at
  the server), so there is nothing to key a history by. Adding it needs
  the client ids in the interface (in-process: `aggregate(updates, weights,
  client_ids)` with the history kept outside the frozen aggregator object,
  e.g. in the runner's state and checkpoints; TFF: each client sends its id
  with its update and the aggregation state holds a [num_clients, d]
  history tensor updated by scatter). Per round, sybils that send alike
  updates in the same round are still caught; sybils that alternate rounds
  or vary their updates are not.
* The similarity is over the whole update; the paper's optional feature-
  importance weighting of the output layer (Section 4, "Feature
  importance") is left out.
* Line 15 sums alpha_i Delta_i (with gradients and a server learning rate);
  here the result is the weighted mean sum_i alpha_i Delta_i / sum_i
  alpha_i, so with every alpha_i = 1 it is the `mean` aggregator's step.
  If every alpha_i is 0 (every client has an exact twin), the update is 0
  (the reference code divides 0 by 0 there).
* Similarities are computed in float64 and alpha_i < 1e-9 (1 - cosine at
  rounding level: an exact twin) is taken as 0; otherwise when every
  client has a twin the rounding residues would be rescaled to weights.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from fedmeta_tf.defenses.server import flame_tf
from fedmeta_tf.defenses.server import robust_tf

Stacked = Sequence[tf.Tensor]  # per weight tensor: [n, *shape]

_TWIN = 1e-9  # alpha_i below this: an exact twin (float64 rounding)
_MAX_RESCALED = 0.99  # Alg. 1 line 13: keeps ln(alpha / (1 - alpha)) finite


def pardoned_similarities(vectors: tf.Tensor) -> tf.Tensor:
  """[n, n]: Alg. 1 lines 6-11, cosine similarities (diagonal 0) with
  pardoning: cs_ij *= v_i / v_j where v_j > v_i (v = row maxima)."""
  n = tf.shape(vectors)[0]
  eye = tf.eye(n, dtype=vectors.dtype)
  cs = flame_tf.cosine_similarities(vectors) - eye
  top = tf.reduce_max(cs, axis=1)
  pardon = (top[:, None] < top[None, :]) & ~tf.cast(eye, tf.bool)
  ratio = tf.math.divide_no_nan(top[:, None], top[None, :])
  return tf.where(pardon, cs * ratio, cs)


def foolsgold_weights(vectors: tf.Tensor, *, kappa: float = 1.0
                      ) -> tf.Tensor:
  """float32 [n]: each client's weight alpha_i in [0, 1] (Alg. 1 lines
  6-14) from the rows of [n, d] `vectors`."""
  if not kappa > 0:
    raise ValueError(f"kappa must be positive, got {kappa}")
  # float64: an exact twin's similarity is 1 to ~1e-16, so alpha below
  # _TWIN is rounding, not a difference (in float32 it can be 1e-7, which
  # the rescaling below would blow up when every client has a twin).
  vectors = tf.cast(tf.convert_to_tensor(vectors), tf.float64)
  alpha = tf.clip_by_value(
      1.0 - tf.reduce_max(pardoned_similarities(vectors), axis=1), 0.0, 1.0)
  alpha = tf.cast(tf.where(alpha < _TWIN, tf.zeros_like(alpha), alpha),
                  tf.float32)
  alpha = tf.math.divide_no_nan(alpha, tf.reduce_max(alpha))
  alpha = tf.where(alpha >= 1.0, _MAX_RESCALED, alpha)
  # ln(0) = -inf: such a client's weight is clipped to 0.
  logit = kappa * (tf.math.log(alpha / (1.0 - alpha)) + 0.5)
  return tf.clip_by_value(logit, 0.0, 1.0)


def foolsgold(stacked: Stacked, *, kappa: float = 1.0
              ) -> tuple[list[tf.Tensor], tf.Tensor]:
  """The FoolsGold-weighted mean of one round's updates.

  Args:
    stacked: per weight tensor, the n clients' updates [n, *shape].
    kappa: the logit's confidence parameter (paper: 1).

  Returns:
    (sum_i alpha_i u_i / sum_i alpha_i, or zeros if every alpha_i is 0;
    the weights alpha, float32 [n]).
  """
  stacked = [tf.convert_to_tensor(s, tf.float32) for s in stacked]
  alpha = foolsgold_weights(robust_tf.flatten_clients(stacked), kappa=kappa)
  coefficients = tf.math.divide_no_nan(alpha, tf.reduce_sum(alpha))
  return [tf.tensordot(coefficients, s, axes=1) for s in stacked], alpha
