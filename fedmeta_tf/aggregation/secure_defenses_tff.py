"""The secure-aggregation defenses (`secure_defenses.py`) as TFF factories.

Every aggregation in these processes is a secure sum (TFF's
`SecureSumFactory`: `federated_secure_sum_bitwidth`); the clients' own
arithmetic (screening, clipping, signs) runs in a CLIENTS-side
`federated_map`, the server's (noise, division, learning rate) in a
SERVER-side one, and the only other intrinsics are broadcasts of public
parameters. So `tff.test.assert_not_contains_unsecure_aggregation` passes for
a round built with either (tests/aggregation/aggregators_test.py) and the
server learns only sums:

    WeakDpFactory    sum of clipped updates (+ the server's noise), the
                     accepted / excluded / clipped counts
    RobustLrFactory  sum of the accepted updates, sum of their sign vectors
                     (per coordinate, how many clients push up minus how
                     many push down), the accepted / excluded counts

A client that skips its clipping (a malicious one) is still bounded by the
secure sum: weak DP's sum clips each coordinate to [-C, C], robust_lr's
sign sum to [-1, 1] and its value sum to the secure-sum bound.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
import tensorflow_privacy as tfp

from fedmeta_tf.aggregation import secure_defenses
from fedmeta_tf.aggregation import secure_tf


def _count_sum():
  """Secure sum of 0/1 client flags (exact, integer)."""
  return tff.aggregators.SecureSumFactory(upper_bound_threshold=1,
                                          lower_bound_threshold=0)


def _zip(**values):
  return tff.federated_zip(collections.OrderedDict(values))


class WeakDpFactory(tff.aggregators.UnweightedAggregationFactory):
  """Weak DP: screen, clip to L2 norm `clip`, secure sum, Gaussian noise of
  stddev `noise_multiplier * clip` on the sum, divide by the accepted count.

  The clip-and-noise is TFF's own `DifferentiallyPrivateFactory` with a
  `tfp.GaussianSumQuery` (what `gaussian_fixed` wraps in a normalisation by
  a fixed expected count; here the division is by the secure count of the
  accepted updates, as the in-process driver divides). Its record sum is a
  `SecureSumFactory` of bound `clip`: a clipped record has every coordinate
  in [-clip, clip], so that bound clips nothing honest and does not raise
  the query's sensitivity.
  """

  def __init__(self, *, clip: float, noise_multiplier: float,
               max_update_norm: float = secure_tf.DEFAULT_MAX_UPDATE_NORM):
    if not clip > 0 or not noise_multiplier >= 0:
      raise ValueError(f"need clip > 0 and noise_multiplier >= 0, got "
                       f"{clip}, {noise_multiplier}")
    self._dp_sum = tff.aggregators.DifferentiallyPrivateFactory(
        tfp.GaussianSumQuery(l2_norm_clip=float(clip),
                             stddev=float(clip) * float(noise_multiplier)),
        record_aggregation_factory=tff.aggregators.SecureSumFactory(
            upper_bound_threshold=float(clip),
            lower_bound_threshold=-float(clip)))
    self._clip = float(clip)
    self._max_update_norm = float(max_update_norm)

  def create(self, value_type):
    dp_sum = self._dp_sum.create(value_type)
    count_type = tff.TensorType(np.int32)
    counts = {k: _count_sum().create(count_type)
              for k in ("accepted", "excluded", "clipped")}
    clip, max_norm = self._clip, self._max_update_norm

    @tff.tensorflow.computation(value_type)
    def screen(value):
      screened, accepted = secure_tf.screen_update(list(value), max_norm)
      clipped = tf.cast(tf.linalg.global_norm(screened) > clip, tf.int32)
      return collections.OrderedDict(value=screened, accepted=accepted,
                                     excluded=1 - accepted, clipped=clipped)

    @tff.tensorflow.computation(value_type, count_type)
    def divide(total, accepted):
      return secure_defenses.divide_by_count(list(total), accepted)

    @tff.federated_computation
    def init_fn():
      return _zip(dp=dp_sum.initialize(),
                  **{k: c.initialize() for k, c in counts.items()})

    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(value_type, tff.CLIENTS))
    def next_fn(state, value):
      screened = tff.federated_map(screen, value)
      total = dp_sum.next(state.dp, screened.value)
      sums = {k: c.next(state[k], screened[k]) for k, c in counts.items()}
      mean = tff.federated_map(divide, (total.result,
                                        sums["accepted"].result))
      new_state = _zip(dp=total.state,
                       **{k: s.state for k, s in sums.items()})
      measurements = _zip(
          weak_dp=total.measurements,
          accepted_updates=sums["accepted"].result,
          excluded_updates=sums["excluded"].result,
          clipped_count=sums["clipped"].result)
      return tff.templates.MeasuredProcessOutput(
          state=new_state, result=mean, measurements=measurements)

    return tff.templates.AggregationProcess(init_fn, next_fn)


class RobustLrFactory(tff.aggregators.UnweightedAggregationFactory):
  """Robust learning rate: the secure mean of the screened updates (each
  coordinate clipped to [-secure_sum_bound, secure_sum_bound] by the secure
  sum), times the per-coordinate rate from a second, integer secure sum of
  the clients' sign vectors (bound 1)."""

  def __init__(self, *, theta: int, flip_lr: float, secure_sum_bound: float,
               max_update_norm: float = secure_tf.DEFAULT_MAX_UPDATE_NORM):
    self._value_sum = tff.aggregators.SecureSumFactory(
        upper_bound_threshold=float(secure_sum_bound),
        lower_bound_threshold=-float(secure_sum_bound))
    self._sign_sum = tff.aggregators.SecureSumFactory(
        upper_bound_threshold=1, lower_bound_threshold=-1)
    self._theta, self._flip_lr = int(theta), float(flip_lr)
    self._max_update_norm = float(max_update_norm)

  def create(self, value_type):
    sign_type = tff.StructWithPythonType(
        [tff.TensorType(np.int32, t.shape) for t in value_type], list)
    value_sum = self._value_sum.create(value_type)
    sign_sum = self._sign_sum.create(sign_type)
    count_type = tff.TensorType(np.int32)
    counts = {k: _count_sum().create(count_type)
              for k in ("accepted", "excluded")}
    theta, flip_lr, max_norm = self._theta, self._flip_lr, self._max_update_norm

    @tff.tensorflow.computation(value_type)
    def screen(value):
      screened, accepted = secure_tf.screen_update(list(value), max_norm)
      return collections.OrderedDict(
          value=screened, signs=secure_defenses.update_signs(screened),
          accepted=accepted, excluded=1 - accepted)

    @tff.tensorflow.computation(value_type, sign_type, count_type)
    def robust_step(total, signs, accepted):
      mean = secure_defenses.divide_by_count(list(total), accepted)
      rates = secure_defenses.robust_learning_rate(
          list(signs), theta=theta, flip_lr=flip_lr)
      return collections.OrderedDict(
          update=[r * m for r, m in zip(rates, mean)],
          flipped_fraction=secure_defenses.flipped_fraction(list(signs),
                                                            theta=theta))

    @tff.federated_computation
    def init_fn():
      return _zip(value=value_sum.initialize(), signs=sign_sum.initialize(),
                  **{k: c.initialize() for k, c in counts.items()})

    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(value_type, tff.CLIENTS))
    def next_fn(state, value):
      screened = tff.federated_map(screen, value)
      total = value_sum.next(state.value, screened.value)
      signs = sign_sum.next(state.signs, screened.signs)
      sums = {k: c.next(state[k], screened[k]) for k, c in counts.items()}
      step = tff.federated_map(robust_step, (total.result, signs.result,
                                             sums["accepted"].result))
      new_state = _zip(value=total.state, signs=signs.state,
                       **{k: s.state for k, s in sums.items()})
      measurements = _zip(
          mean_value=total.measurements,
          flipped_fraction=step.flipped_fraction,
          accepted_updates=sums["accepted"].result,
          excluded_updates=sums["excluded"].result)
      return tff.templates.MeasuredProcessOutput(
          state=new_state, result=step.update, measurements=measurements)

    return tff.templates.AggregationProcess(init_fn, next_fn)
