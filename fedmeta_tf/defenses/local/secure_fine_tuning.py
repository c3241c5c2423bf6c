"""Algorithm 2's fine-tuning (FLClientSecureFineTuning), in-graph.

Main paper, Section 4.1 and Algorithm 2, lines 6-17: on the client's K-shot
N-way support set S, starting from the Glorot-mixed feature extractor
theta' (`glorot_mix.py`) and a fresh head (`models/matching.py`):

    for fine-tuning iterations:
      pick queries (x, y) from S                              # line 9
      y_hat = head(f(x), f(S))                                # lines 10-16
      (theta', alpha, beta) -= eta * grad l_c(y, y_hat)       # line 17

with only alpha, beta trained for the first `head_only_steps` iterations
(f fixed) and f, alpha, beta jointly afterwards (Section 4.1). One iteration
is one Adam step (beta1 = 0, as all fine-tuning here) on a mini-batch of
`batch` queries drawn without replacement, epoch by epoch, from S (the
paper's line 9 draws one query; matching networks train on batches
[Vinyals et al., Sec. 4.1]; batch = 1 is the literal reading).

The phase switch happens in-graph, so a caller can evaluate after every
iteration (`step`): during the head-only phase the feature extractor's
gradients are zeroed, which with beta1 = 0 makes Adam's step on them exactly
zero; the optimizer is reset when the joint phase starts, so that phase's
Adam bias correction starts afresh.

Keras objects are created in `MetricHeadLearner.__init__`, outside any
tf.function; `start`, `step`, `fine_tune` and `predict` run inside one.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf

from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import weights as w
from fedmeta_tf.models import conv4
from fedmeta_tf.models import matching


@dataclasses.dataclass(frozen=True)
class DefenseConfig:
  """Hyperparameters of Algorithm 2.

  Attributes:
    head: the metric head (matching network or ProtoNet).
    steps: fine-tuning iterations in all.
    head_only_steps: the first iterations, which train alpha, beta alone.
    batch: queries per iteration.
    learning_rate: eta (Adam, beta1 = 0).
    leave_one_out: a training query may not match its own copy in S.
    initial_scale: beta's start; None takes the head's default.
  """

  head: matching.HeadKind = matching.HeadKind.MATCHING
  steps: int = 50
  head_only_steps: int = 5
  batch: int = 10
  learning_rate: float = 0.001
  leave_one_out: bool = True
  initial_scale: Optional[float] = None

  def __post_init__(self):
    object.__setattr__(self, "head", matching.parse_head_kind(self.head))
    for name in ("steps", "batch"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if not 0 <= self.head_only_steps <= self.steps:
      raise ValueError(f"head_only_steps must be in [0, steps={self.steps}], "
                       f"got {self.head_only_steps}")
    if not self.learning_rate > 0:
      raise ValueError(f"learning_rate must be positive, got "
                       f"{self.learning_rate}")
    if self.initial_scale is not None and not self.initial_scale > 0:
      raise ValueError(f"initial_scale must be positive, got "
                       f"{self.initial_scale}")


class MetricHeadLearner:
  """A feature extractor, a metric head and their optimizer, reused across
  episodes: `start` loads theta' and resets the head, `step` runs one
  iteration, `predict` classifies against the current support set."""

  def __init__(self, *, image_shape, ways: int, config: DefenseConfig,
               variant: str = "maxpool", filters: int = 64):
    if ways < 2:
      raise ValueError(f"ways (N) must be >= 2, got {ways}")
    self.config = config
    self.ways = ways
    features = conv4.build_feature_extractor(tuple(image_shape),
                                             variant=variant, filters=filters)
    head = matching.build_head(config.head, initial_scale=config.initial_scale)
    self.classifier = matching.FewShotClassifier(features, head)
    self.feature_variables = list(features.trainable_variables)
    self.variables = self.feature_variables + self.classifier.head_variables
    self.optimizer = reptile_tf.make_inner_optimizer(config.learning_rate)
    self.optimizer.build(self.variables)

  def check_support(self, shots: int) -> None:
    """Raises ValueError when S is too small for the configuration."""
    if self.config.leave_one_out and shots < 2:
      raise ValueError("leave_one_out needs shots >= 2 (a query's class must "
                       "keep another support example)")

  def start(self, feature_weights) -> None:
    """theta' into f, fresh alpha and beta, fresh optimizer (lines 5-6)."""
    w.assign(self.feature_variables, list(feature_weights))
    self.classifier.head.reset()
    reptile_tf.reset_optimizer(self.optimizer)

  def query_schedule(self, num_support, seed) -> tf.Tensor:
    """int32 [steps, batch] query indices into S for the whole run."""
    return reptile_tf.minibatch_indices(
        num_support, tf.minimum(self.config.batch, num_support),
        self.config.steps, seed)

  def step(self, support_images, support_labels, query_indices,
           step) -> tf.Tensor:
    """Iteration `step` (0-based) on queries S[query_indices]; returns l_c."""
    joint = step >= self.config.head_only_steps
    if self.config.head_only_steps > 0:
      tf.cond(tf.equal(step, self.config.head_only_steps),
              self._reset_optimizer, lambda: tf.constant(False))
    with tf.GradientTape() as tape:
      log_probs = self.classifier.support_log_probs(
          support_images, support_labels, query_indices, num_classes=self.ways,
          leave_one_out=self.config.leave_one_out)
      loss = matching.nll(log_probs, tf.gather(support_labels, query_indices))
    grads = tape.gradient(loss, self.variables)
    keep = tf.cast(joint, tf.float32)
    num_features = len(self.feature_variables)
    grads = [g * keep for g in grads[:num_features]] + grads[num_features:]
    self.optimizer.apply_gradients(zip(grads, self.variables))
    return loss

  def _reset_optimizer(self):
    reptile_tf.reset_optimizer(self.optimizer)
    return tf.constant(True)

  def fine_tune(self, feature_weights, support_images, support_labels,
                seed) -> tf.Tensor:
    """`start`, then all iterations; returns the last loss."""
    self.start(feature_weights)
    schedule = self.query_schedule(tf.shape(support_labels)[0], seed)
    loss = tf.constant(0.0)
    for i in tf.range(self.config.steps):
      loss = self.step(support_images, support_labels, schedule[i], i)
    return loss

  def memory(self, support_images, support_labels):
    """The support memory (f(S) embedded as one batch, one-hot labels)."""
    return (self.classifier.embed(support_images),
            tf.one_hot(support_labels, self.ways))

  def predict(self, images, support_images, support_labels,
              memory=None) -> tf.Tensor:
    """[B, N] log-probabilities of `images` (embedded as one batch) against
    S, or against a precomputed `memory` of S."""
    if memory is None:
      memory = self.memory(support_images, support_labels)
    return self.classifier(images, *memory)
