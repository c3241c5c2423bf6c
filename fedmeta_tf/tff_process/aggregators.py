"""Aggregation factories for client updates, chosen by name (`--aggregator`).

`secure_mean` is the papers' setting (main paper, Section 2.1): the server
learns only the sum of the updates. It is a mean whose sums are TFF's
`SecureSumFactory` (see `fault_tolerance.py`, which also excludes NaN/Inf or
absurd-norm updates before the sum): every update coordinate is clipped to
[-secure_sum_bound, secure_sum_bound], quantised to 32 bits and summed with
`federated_secure_sum_bitwidth`; the count of updates is summed securely too,
so the round contains no unsecure aggregation (checked statically in
`tests/tff_process/process_test.py`). The measurements report how many client
updates had a coordinate clipped above / below the bound.

`mean` is the same mean with a plain `federated_sum`, for comparison only: it
lets the server see nothing more, but it is not a secure aggregation and the
static check rejects it.

New aggregators (the robust, server-side defenses) register here; the process
builder takes any `tff.aggregators.UnweightedAggregationFactory`.
"""

from __future__ import annotations

import enum

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedmeta_tf.tff_process import fault_tolerance


class AggregatorName(enum.Enum):
  SECURE_MEAN = "secure_mean"
  MEAN = "mean"
  # Robust server-side defenses (fedmeta_tf/defenses/server/): each needs the
  # individual client updates, so none is a secure aggregation. Written
  # `name[:parameter]`, e.g. `trimmed_mean:0.2`, `krum:1`, `norm_clip:3.0`.
  MEDIAN = "median"
  TRIMMED_MEAN = "trimmed_mean"
  KRUM = "krum"
  MULTI_KRUM = "multi_krum"
  NORM_CLIP = "norm_clip"


def parse_aggregator(spec: AggregatorName | str
                     ) -> tuple[AggregatorName, str | None]:
  """`name[:parameter]` -> (name, parameter string or None).

  Raises:
    ValueError: unknown name (the message lists the valid ones).
  """
  if isinstance(spec, AggregatorName):
    return spec, None
  base, _, parameter = str(spec).partition(":")
  try:
    name = AggregatorName(base)
  except ValueError:
    valid = ", ".join(a.value for a in AggregatorName)
    raise ValueError(f"unknown aggregator {spec!r}; valid: {valid} "
                     "(robust ones take name:parameter)") from None
  if name in (AggregatorName.SECURE_MEAN, AggregatorName.MEAN) and parameter:
    raise ValueError(f"aggregator {base!r} takes no parameter, got {spec!r}")
  return name, parameter or None


def secure_mean_factory(
    secure_sum_bound: float, *,
    max_update_norm: float = fault_tolerance.DEFAULT_MAX_UPDATE_NORM
) -> tff.aggregators.UnweightedAggregationFactory:
  """Mean of the accepted updates; every sum is a secure sum.

  Faulty updates (NaN/Inf, or L2 norm above `max_update_norm`) are excluded
  before the secure sum (`fault_tolerance.py`).
  """
  return fault_tolerance.FaultTolerantSecureMeanFactory(
      secure_sum_bound=secure_sum_bound, max_update_norm=max_update_norm)


def build_aggregator(
    name: AggregatorName | str, *, secure_sum_bound: float,
    max_update_norm: float = fault_tolerance.DEFAULT_MAX_UPDATE_NORM
) -> tff.aggregators.UnweightedAggregationFactory:
  """The aggregation factory called `name`.

  Raises:
    ValueError: unknown name (the message lists the valid ones).
  """
  name, parameter = parse_aggregator(name)
  if name is AggregatorName.SECURE_MEAN:
    return secure_mean_factory(secure_sum_bound,
                               max_update_norm=max_update_norm)
  if name is AggregatorName.MEAN:
    return tff.aggregators.UnweightedMeanFactory()
  from fedmeta_tf.defenses.server import spec as robust_spec  # pylint: disable=g-import-not-at-top
  return robust_spec.build_factory(name.value, parameter)


def clip_like_secure_sum(update, secure_sum_bound: float):
  """What `SecureSumFactory` does to one client's update before summing
  (clipping; its 32-bit quantisation is below float32 resolution of the
  result), for the in-process driver."""
  return [tf.clip_by_value(u, -secure_sum_bound, secure_sum_bound)
          for u in update]


def count_clipped(update, secure_sum_bound: float) -> tuple[int, int]:
  """(upper, lower) clipped flags of one update, as SecureSumFactory counts."""
  upper = any(bool(np.max(u) > secure_sum_bound) for u in update)
  lower = any(bool(np.min(u) < -secure_sum_bound) for u in update)
  return int(upper), int(lower)
