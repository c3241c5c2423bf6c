"""Robust aggregator specs: `--aggregator=name[:parameter]` -> factory / statistic.

    median              coordinate-wise median
    trimmed_mean[:beta] coordinate-wise trimmed mean, trim fraction beta
                        (default 0.1) at each end
    krum[:f]            Krum assuming f attackers (default 1)
    multi_krum[:f]      multi-Krum: mean of the n - f best-scored updates
    norm_clip[:norm]    L2 clip of each update to `norm` (default 1.0), then
                        the mean (TFF's clipping_factory)

All of them need every client's update at the server (no secure
aggregation). `build_factory` gives the TFF factory (`robust_tff.py`);
`aggregate` computes the same thing on a list of updates for the
in-process driver, with the same pure-TF functions (`robust_tf.py`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from fedmeta_tf.defenses.server import robust_tf

DEFAULT_PARAMETERS = {
    "median": None,
    "trimmed_mean": 0.1,
    "krum": 1,
    "multi_krum": 1,
    "norm_clip": 1.0,
}


def resolve_parameter(name: str, parameter: Optional[str]):
  """The parameter of robust aggregator `name` (its default when None).

  Raises:
    ValueError: unknown name, a parameter given to `median`, or a malformed
      or out-of-range parameter.
  """
  if name not in DEFAULT_PARAMETERS:
    raise ValueError(f"unknown robust aggregator {name!r}; valid: "
                     f"{', '.join(DEFAULT_PARAMETERS)}")
  default = DEFAULT_PARAMETERS[name]
  if parameter is None or parameter == "":
    return default
  if default is None:
    raise ValueError(f"aggregator {name!r} takes no parameter, got "
                     f"{name}:{parameter}")
  try:
    value = type(default)(parameter)
  except ValueError:
    raise ValueError(f"aggregator {name}: parameter must be a "
                     f"{type(default).__name__}, got {parameter!r}") from None
  if name == "trimmed_mean" and not 0 <= value < 0.5:
    raise ValueError(f"trimmed_mean: trim fraction must be in [0, 0.5), got "
                     f"{value}")
  if name in ("krum", "multi_krum") and value < 0:
    raise ValueError(f"{name}: number of attackers f must be >= 0, got {value}")
  if name == "norm_clip" and not value > 0:
    raise ValueError(f"norm_clip: norm must be positive, got {value}")
  return value


def statistic(name: str, parameter: Optional[str]):
  """The pure-TF statistic (list of [n, ...] -> list of [...]) of `name`;
  None for norm_clip, which clips each update and averages."""
  value = resolve_parameter(name, parameter)
  if name == "median":
    return robust_tf.coordinate_median
  if name == "trimmed_mean":
    return lambda s: robust_tf.trimmed_mean(s, trim_fraction=value)
  if name == "krum":
    return lambda s: robust_tf.multi_krum(s, num_byzantine=value,
                                          num_selected=1)
  if name == "multi_krum":
    return lambda s: robust_tf.multi_krum(s, num_byzantine=value)
  return None


def build_factory(name: str, parameter: Optional[str]):
  """The TFF aggregation factory of robust aggregator `name`."""
  from fedmeta_tf.defenses.server import robust_tff  # pylint: disable=g-import-not-at-top
  value = resolve_parameter(name, parameter)
  if name == "norm_clip":
    return robust_tff.norm_clip_factory(value)
  return robust_tff.GatheredStatisticFactory(statistic(name, parameter), name)


def aggregate(name: str, parameter: Optional[str],
              updates: Sequence[Sequence[np.ndarray]]
              ) -> tuple[list[tf.Tensor], dict]:
  """In-process: the aggregated update of `updates` (one list per client) and
  metrics (norm_clip: `clipped_count`, as TFF's factory reports it)."""
  value = resolve_parameter(name, parameter)
  if name == "norm_clip":
    clipped, count = [], 0
    for update in updates:
      u, norm = robust_tf.clip_by_global_norm(
          [tf.constant(x, tf.float32) for x in update], value)
      clipped.append(u)
      count += int(norm > value)
    mean = [tf.add_n(list(ws)) / len(clipped) for ws in zip(*clipped)]
    return mean, {"clipped_count": count}
  stacked = [tf.stack([tf.constant(u[k], tf.float32) for u in updates])
             for k in range(len(updates[0]))]
  return statistic(name, parameter)(stacked), {}
