"""Metric heads of the local defense: matching network and ProtoNet.

Main paper, Section 4.1 and Algorithm 2 (lines 10-16): a benign client drops
the shared decision layer and classifies a query x by its similarity to a
labelled support set S = {(x_k, y_k)}:

    c'(x, x_k) = cos(alpha ⊙ f(x), f(x_k)) * beta
    a(x, x_k)  = softmax_k c'(x, x_k)
    y_hat      = sum_k a(x, x_k) y_k                 (y_k one-hot)

`MatchingHead` is that head; `PrototypeHead` is the appendix's ProtoNet
variant (Snell et al.): logits -beta * ||alpha ⊙ (f(x) - c_n)||^2 to the
class prototypes c_n (mean support embeddings).

Choices the paper leaves open (docs/local_defense.md):
- alpha = sigmoid(gate_logits), one gate per feature, initialised at
  gate_logits = 0 (alpha = 0.5 everywhere). Cosine similarity is invariant to
  a uniform scale of the query, so this start is exactly the ungated
  matching network, and the sigmoid is steepest there. The gates stay in
  (0, 1) without clipping, which would stop the gradient at the bounds.
- beta is a free scalar (a temperature). Features leave a ReLU, so cosines
  lie in [0, 1]; with beta = 1 the attention would be almost uniform, so the
  matching head starts at beta = 10 (the usual start of a learnt cosine
  scale). ProtoNet gates both sides of the difference (a learnt diagonal
  metric; gating only the query would compare a shrunk query with an
  unshrunk prototype) and starts at beta = 4, which with alpha = 0.5 is the
  plain ProtoNet distance.
- Heads return log-probabilities, computed stably: for the matching head
  log y_hat_n = logsumexp_{k: y_k = n} c'_k - logsumexp_k c'_k.
- `exclude` masks (query, support) pairs out of the attention: training
  queries come from S itself (Algorithm 2 line 9), and leave-one-out stops
  a query from matching itself (see `support_log_probs`).

`FewShotClassifier` puts a head on a Conv4 feature extractor
(`conv4.feature_extractor(model)`). Batch norm uses batch statistics
(`models/conv4.py`): the support set is embedded as one batch, and so are
the images to classify (the transductive setting evaluation uses for the
dense head too).
"""

from __future__ import annotations

import enum
from typing import Optional

import tensorflow as tf

from fedmeta_tf import enums

# Added to masked scores: exp() of it is 0, and unlike -inf it keeps
# gradients finite.
_MASKED = -1e9


class HeadKind(enum.Enum):
  MATCHING = "matching"
  PROTONET = "protonet"


def parse_head_kind(kind) -> HeadKind:
  return enums.parse_enum(HeadKind, kind, "head")


DEFAULT_INITIAL_SCALE = {HeadKind.MATCHING: 10.0, HeadKind.PROTONET: 4.0}


class _MetricHead(tf.keras.layers.Layer):
  """Shared state of both heads: gates alpha (one per feature) and scale beta."""

  def __init__(self, *, initial_scale: float, **kwargs):
    super().__init__(**kwargs)
    if not initial_scale > 0:
      raise ValueError(f"initial_scale (beta) must be positive, got "
                       f"{initial_scale}")
    self.initial_scale = float(initial_scale)

  def build(self, input_shape):
    dim = int(input_shape[-1])
    self.gate_logits = self.add_weight(name="gate_logits", shape=[dim],
                                       initializer="zeros")
    self.scale = self.add_weight(
        name="scale", shape=[],
        initializer=tf.keras.initializers.Constant(self.initial_scale))
    super().build(input_shape)

  @property
  def gates(self) -> tf.Tensor:
    """alpha, in (0, 1)."""
    return tf.sigmoid(self.gate_logits)

  def reset(self) -> None:
    """Back to the initial alpha, beta (a fresh head for a new task)."""
    self.gate_logits.assign(tf.zeros_like(self.gate_logits))
    self.scale.assign(self.initial_scale)

  def get_config(self):
    return {**super().get_config(), "initial_scale": self.initial_scale}


class MatchingHead(_MetricHead):
  """Attention over the support set (Algorithm 2, lines 13-16)."""

  def __init__(self, *, initial_scale: float = DEFAULT_INITIAL_SCALE[
      HeadKind.MATCHING], **kwargs):
    super().__init__(initial_scale=initial_scale, **kwargs)

  def scores(self, query_features, support_features) -> tf.Tensor:
    """c'(x, x_k) = cos(alpha ⊙ f(x), f(x_k)) * beta, shape [Q, S]."""
    return matching_scores(self.gates, self.scale, query_features,
                           support_features)

  def call(self, query_features, support_features, support_onehot,
           exclude: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Log of y_hat = sum_k softmax_k(c'_k) y_k (`matching_log_probs`).

    Args:
      query_features: [Q, D].
      support_features: [S, D].
      support_onehot: [S, N] float one-hot labels of the support set.
      exclude: optional bool [Q, S]; True pairs get no attention.

    Returns:
      [Q, N] log-probabilities.
    """
    return matching_log_probs(self.gates, self.scale, query_features,
                              support_features, support_onehot, exclude)


class PrototypeHead(_MetricHead):
  """ProtoNet (main paper, appendix): gated Euclidean distance to prototypes."""

  def __init__(self, *, initial_scale: float = DEFAULT_INITIAL_SCALE[
      HeadKind.PROTONET], **kwargs):
    super().__init__(initial_scale=initial_scale, **kwargs)

  def call(self, query_features, support_features, support_onehot,
           exclude: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Same arguments as `MatchingHead.call`; `exclude` removes support
    examples from the query's prototypes (`prototype_log_probs`)."""
    return prototype_log_probs(self.gates, self.scale, query_features,
                               support_features, support_onehot, exclude)


def matching_scores(gates, scale, query_features,
                    support_features) -> tf.Tensor:
  """c'(x, x_k) = cos(alpha ⊙ f(x), f(x_k)) * beta, [..., Q, S] (shapes as
  `matching_log_probs`)."""
  query = tf.math.l2_normalize(gates[..., None, :] * query_features, axis=-1)
  support = tf.math.l2_normalize(support_features, axis=-1)
  return scale[..., None, None] * tf.matmul(query, support, transpose_b=True)


def matching_log_probs(gates, scale, query_features, support_features,
                       support_onehot, exclude=None) -> tf.Tensor:
  """The matching head's log y_hat (Algorithm 2, lines 13-16), of one head
  or of E stacked heads (batched evaluation): gates alpha [..., D], scale
  beta [...], query_features [..., Q, D], support_features [..., S, D],
  support_onehot [..., S, N], exclude bool [..., Q, S] or None ->
  [..., Q, N], where "..." is () or (E,)."""
  scores = matching_scores(gates, scale, query_features, support_features)
  if exclude is not None:
    scores = tf.where(exclude, _MASKED, scores)
  member = tf.linalg.matrix_transpose(support_onehot) > 0  # [..., N, S]
  per_class = tf.where(member[..., None, :, :], scores[..., :, None, :],
                       _MASKED)  # [..., Q, N, S]
  return (tf.reduce_logsumexp(per_class, axis=-1) -
          tf.reduce_logsumexp(scores, axis=-1, keepdims=True))


def prototype_log_probs(gates, scale, query_features, support_features,
                        support_onehot, exclude=None) -> tf.Tensor:
  """ProtoNet's log-probabilities -beta ||alpha ⊙ (f(x) - c_n)||^2 (main
  paper, appendix), shapes as `matching_log_probs`."""
  membership = tf.linalg.matrix_transpose(support_onehot)[..., None, :, :]
  if exclude is not None:  # [..., Q, N, S]
    membership = membership * tf.cast(~exclude, membership.dtype)[..., None, :]
  counts = tf.reduce_sum(membership, axis=-1, keepdims=True)
  prototypes = tf.einsum("...qns,...sd->...qnd", membership,
                         support_features) / tf.maximum(counts, 1.0)
  diff = gates[..., None, None, :] * (query_features[..., :, None, :] -
                                      prototypes)
  logits = -scale[..., None, None] * tf.reduce_sum(tf.square(diff), axis=-1)
  return tf.nn.log_softmax(logits, axis=-1)


LOG_PROBS = {HeadKind.MATCHING: matching_log_probs,
             HeadKind.PROTONET: prototype_log_probs}


def build_head(kind: HeadKind | str, *,
               initial_scale: Optional[float] = None) -> _MetricHead:
  """The head called `kind`; `initial_scale` None takes the head's default."""
  kind = parse_head_kind(kind)
  scale = DEFAULT_INITIAL_SCALE[kind] if initial_scale is None else initial_scale
  cls = MatchingHead if kind is HeadKind.MATCHING else PrototypeHead
  return cls(initial_scale=scale, dtype=tf.float32, name=f"{kind.value}_head")


def leave_one_out_mask(query_indices, num_support) -> tf.Tensor:
  """bool [..., Q, S]: True where support example k is query q itself
  (`query_indices` [..., Q])."""
  return tf.equal(tf.cast(query_indices, tf.int32)[..., None],
                  tf.range(num_support, dtype=tf.int32))


class FewShotClassifier(tf.keras.Model):
  """A Conv4 feature extractor with a metric head instead of a dense layer.

  `call(images, support_features, support_onehot)` classifies `images`
  against a support memory (embeddings and one-hot labels); `embed` makes
  that memory from support images.
  """

  def __init__(self, features: tf.keras.Model, head: _MetricHead, **kwargs):
    super().__init__(**kwargs)
    self.features = features
    self.head = head
    self.head.build(features.output_shape)

  @property
  def head_variables(self) -> list:
    return list(self.head.trainable_variables)

  def embed(self, images) -> tf.Tensor:
    return tf.cast(self.features(images, training=True), tf.float32)

  def call(self, images, support_features, support_onehot):
    """[B, N] log-probabilities of `images` given the support memory."""
    return self.head(self.embed(images), support_features, support_onehot)

  def support_log_probs(self, support_images, support_labels, query_indices, *,
                        num_classes: int, leave_one_out: bool) -> tf.Tensor:
    """Training forward pass: queries drawn from S (Algorithm 2, line 9).

    S is embedded once, as one batch; the queries are the support examples
    at `query_indices`. With `leave_one_out` a query does not attend to (or,
    for ProtoNet, enter the prototype of) its own copy in S; without it the
    matching head can lower the loss by matching each example to itself,
    which teaches nothing about the task.

    Returns:
      [Q, N] log-probabilities of the queries.
    """
    return queries_from_support(
        self.head, self.embed(support_images), support_labels, query_indices,
        num_classes=num_classes, leave_one_out=leave_one_out)


def queries_from_support(head, support_features, support_labels,
                         query_indices, *, num_classes: int,
                         leave_one_out: bool) -> tf.Tensor:
  """Algorithm 2, line 9, given S's features [..., S, D] and labels
  [..., S]: the log-probabilities [..., Q, N] of the support examples at
  `query_indices` [..., Q] under `head(query_features, support_features,
  support_onehot, exclude)` (`FewShotClassifier.support_log_probs`; "..."
  is () or (E,) for E stacked heads)."""
  onehot = tf.one_hot(support_labels, num_classes)
  query_features = tf.gather(support_features, query_indices,
                             batch_dims=len(query_indices.shape) - 1)
  exclude = (leave_one_out_mask(query_indices, tf.shape(support_labels)[-1])
             if leave_one_out else None)
  return head(query_features, support_features, onehot, exclude)


def nll(log_probs, labels) -> tf.Tensor:
  """Mean cross-entropy l_c(y, y_hat) from log-probabilities [..., Q, N]
  and labels [..., Q]: a scalar, or [E] for E stacked heads."""
  rank = len(labels.shape)
  return -tf.reduce_mean(tf.gather(log_probs, labels, batch_dims=rank),
                         axis=-1)
