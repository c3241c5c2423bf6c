"""Robust server-side aggregators as TFF aggregation factories (Exp. 3e).

Each factory is a `tff.aggregators.UnweightedAggregationFactory` that plugs
into `build_fedmeta_process` in place of the secure-sum mean; the aggregator
objects (`fedmeta_tf/aggregation/aggregators.py`: median, trimmed mean,
Krum, multi-Krum, norm clipping) build them with their parameters. A robust
statistic needs the individual updates: the process gathers them at the
server with a `tff.federated_aggregate` whose accumulator concatenates the
client values into [n, ...] tensors (the way TFF's
`UnweightedReservoirSamplingFactory` collects its samples, without the
sampling), and its `report` applies a pure-TF statistic from
`robust_tf.py`, the same function the in-process driver calls (through the
aggregator object's TF form).

IMPORTANT: every factory here reveals each client's update to the server.
None of them is compatible with secure aggregation, and
`tff.test.assert_not_contains_unsecure_aggregation(process.next)` fails for
a process built with any of them (tests/defenses/server/robust_tff_test.py).
This is the privacy cost the main paper (Section 4.2, Exp. 3e) weighs
against its local defense.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf
import tensorflow_federated as tff

Statistic = Callable[[list], list]


def _stacked_type(value_type) -> tff.StructWithPythonType:
  """The list-of-tensors `value_type` with a leading [None] client axis."""
  members = list(value_type) if isinstance(value_type, tff.StructType) else None
  if members is None or not all(isinstance(t, tff.TensorType) for t in members):
    raise TypeError("robust aggregators take a flat list of tensors (model "
                    f"weights), got {value_type}")
  return tff.StructWithPythonType(
      [tff.TensorType(t.dtype, (None,) + tuple(t.shape)) for t in members],
      list)


class GatheredStatisticFactory(tff.aggregators.UnweightedAggregationFactory):
  """Gathers every client's update at the server, then applies `statistic`.

  Needs individual client updates at the server (no secure aggregation).

  Args:
    statistic: pure-TF function, list of [n, ...] tensors -> list of [...]
      tensors (see `robust_tf.py`).
    name: for error messages and docs.
  """

  def __init__(self, statistic: Statistic, name: str):
    self._statistic = statistic
    self.name = name

  def create(self, value_type) -> tff.templates.AggregationProcess:
    value_type = tff.to_type(value_type)
    stacked_type = _stacked_type(value_type)
    shapes = [tuple(t.shape) for t in value_type]
    dtypes = [t.dtype for t in value_type]
    statistic = self._statistic

    @tff.tensorflow.computation
    def empty():
      return [tf.zeros((0,) + s, d) for s, d in zip(shapes, dtypes)]

    @tff.tensorflow.computation(stacked_type, value_type)
    def accumulate(stacked, value):
      return [tf.concat([a, v[None]], axis=0) for a, v in zip(stacked, value)]

    @tff.tensorflow.computation(stacked_type, stacked_type)
    def merge(a, b):
      return [tf.concat([x, y], axis=0) for x, y in zip(a, b)]

    @tff.tensorflow.computation(stacked_type)
    def report(stacked):
      return statistic(list(stacked))

    @tff.federated_computation
    def init_fn():
      return tff.federated_value((), tff.SERVER)

    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(value_type, tff.CLIENTS))
    def next_fn(state, value):
      result = tff.federated_aggregate(value, empty(), accumulate, merge,
                                       report)
      return tff.templates.MeasuredProcessOutput(
          state=state, result=result,
          measurements=tff.federated_value((), tff.SERVER))

    return tff.templates.AggregationProcess(init_fn, next_fn)


def norm_clip_factory(clip_norm: float
                      ) -> tff.aggregators.UnweightedAggregationFactory:
  """Norm-bound clipping (Sun et al. 2019): TFF's own `clipping_factory`
  (L2 clip of each update to `clip_norm`) around a plain mean.

  Needs individual client updates at the server: TFF places the clip in a
  CLIENTS-side `federated_map`, which a malicious client would simply skip,
  so as a defense it must run where each update is visible; the mean and the
  clipped count use unsecure `federated_sum`s (the static check fails).
  Measurements include `clipped_count`.
  """
  if not clip_norm > 0:
    raise ValueError(f"clip_norm must be positive, got {clip_norm}")
  return tff.aggregators.clipping_factory(
      float(clip_norm), tff.aggregators.UnweightedMeanFactory())


__all__ = ["GatheredStatisticFactory", "norm_clip_factory"]
