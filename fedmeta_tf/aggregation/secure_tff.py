"""The papers' secure-sum mean as a TFF aggregation factory, fault tolerant.

The papers' setting (main paper, Section 2.1): the server learns only the sum
of the updates. A client update with a NaN or Inf, or with an absurd L2 norm
(above `max_update_norm`), would silently corrupt the global model: one NaN
makes the whole secure sum NaN. Each client screens its own update before it
is summed (`secure_tf.screen_update`): a faulty update is replaced by zeros
and the client reports `accepted = 0` (else 1). The server then receives,
through secure sums only,

    sum of accepted updates,  number of accepted,  number excluded,

and divides: the mean is over the accepted updates alone, so an excluded
update neither moves nor shrinks the round's step. When no update is
accepted the mean is zero and the round leaves the model unchanged. Every
aggregation here is a `federated_secure_sum_bitwidth` (via TFF's
`SecureSumFactory`: each coordinate clipped to [-bound, bound], quantised to
32 bits and summed), so the round stays free of unsecure aggregation
(checked statically in tests/aggregation/aggregators_test.py), and the
server learns only the count of excluded updates, not whose they were. The
measurements also report how many updates had a coordinate clipped above /
below the bound.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedmeta_tf.aggregation import secure_tf


class FaultTolerantSecureMeanFactory(
    tff.aggregators.UnweightedAggregationFactory):
  """Mean of the accepted client updates, computed with secure sums only."""

  def __init__(self, *, secure_sum_bound: float,
               max_update_norm: float = secure_tf.DEFAULT_MAX_UPDATE_NORM):
    if not secure_sum_bound > 0:
      raise ValueError(
          f"secure_sum_bound must be positive, got {secure_sum_bound}")
    if not max_update_norm > 0:
      raise ValueError(
          f"max_update_norm must be positive, got {max_update_norm}")
    self._value_sum = tff.aggregators.SecureSumFactory(
        upper_bound_threshold=float(secure_sum_bound),
        lower_bound_threshold=-float(secure_sum_bound))
    self._count_sum = tff.aggregators.SecureSumFactory(
        upper_bound_threshold=1, lower_bound_threshold=0)
    self._max_update_norm = float(max_update_norm)

  def create(self, value_type):
    value_sum = self._value_sum.create(value_type)
    count_type = tff.TensorType(np.int32)
    accepted_sum = self._count_sum.create(count_type)
    excluded_sum = self._count_sum.create(count_type)
    max_norm = self._max_update_norm

    @tff.tensorflow.computation(value_type)
    def screen(value):
      screened, accepted = secure_tf.screen_update(list(value), max_norm)
      return collections.OrderedDict(value=screened, accepted=accepted,
                                     excluded=1 - accepted)

    @tff.tensorflow.computation(value_type, count_type)
    def divide(total, accepted):
      scale = 1.0 / tf.cast(tf.maximum(accepted, 1), tf.float32)
      return [t * scale for t in total]

    @tff.federated_computation
    def init_fn():
      return tff.federated_zip(collections.OrderedDict(
          value=value_sum.initialize(), accepted=accepted_sum.initialize(),
          excluded=excluded_sum.initialize()))

    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(value_type, tff.CLIENTS))
    def next_fn(state, value):
      screened = tff.federated_map(screen, value)
      total = value_sum.next(state.value, screened.value)
      accepted = accepted_sum.next(state.accepted, screened.accepted)
      excluded = excluded_sum.next(state.excluded, screened.excluded)
      mean = tff.federated_map(divide, (total.result, accepted.result))
      new_state = tff.federated_zip(collections.OrderedDict(
          value=total.state, accepted=accepted.state, excluded=excluded.state))
      measurements = tff.federated_zip(collections.OrderedDict(
          mean_value=total.measurements,
          accepted_updates=accepted.result,
          excluded_updates=excluded.result))
      return tff.templates.MeasuredProcessOutput(
          state=new_state, result=mean, measurements=measurements)

    return tff.templates.AggregationProcess(init_fn, next_fn)
