"""Aggregators of client updates: one object each, parsed from `--aggregator`.

An aggregator is what the server does with one round's client updates before
it adds the result to the global model (main paper, Algorithm 1). Each object
has the two forms the two drivers need, computing the same thing:

    aggregate(updates, weights)  in-process driver: the updates of the
                                 clients that reported -> (update, metrics)
    tff_factory()                TFF driver: an UnweightedAggregationFactory
                                 (TFF is imported only here, lazily)

and says whether it keeps secure aggregation (`keeps_secure_aggregation`:
the server learns only the sum of the updates, main paper, Section 2.1;
checked statically against `tff.test.assert_not_contains_unsecure_aggregation`
in tests/aggregation/aggregators_test.py).

    secure_mean         the papers' setting: fault-tolerant secure-sum mean
                        (`secure_tf.py`, `secure_tff.py`)
    mean                plain mean with unsecure sums, for comparison only

and the robust server-side defenses of the main paper's Exp. 3(e)
(Section 4.2; math in `defenses/server/robust_tf.py`), each of which needs
every client's update at the server, so none keeps secure aggregation:

    median              coordinate-wise median
    trimmed_mean[:beta] coordinate-wise trimmed mean, beta (default 0.1) of
                        the values dropped at each end
    krum[:f]            Krum assuming f attackers (default 1)
    multi_krum[:f]      the mean of the n - f updates Krum scores best
    norm_clip[:norm]    L2 clip of each update to `norm` (default 1.0), then
                        the mean

`parse_aggregator` turns the flag text into one of these objects.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar, Optional, Sequence

import numpy as np
import tensorflow as tf

from fedmeta_tf.aggregation import secure_tf
from fedmeta_tf.defenses.server import robust_tf
from fedmeta_tf.meta import weights as w

Update = Sequence[np.ndarray]  # one client's update, per weight tensor


class Aggregator(abc.ABC):
  """How the server combines one round's client updates.

  Attributes:
    name: the flag's name (`--aggregator=name[:parameter]`).
    parameter: the field the flag's `:parameter` sets; None: it takes none.
    keeps_secure_aggregation: whether the TFF round holds only secure
      aggregation (the server sees the sum of the updates, no single one).
  """

  name: ClassVar[str]
  parameter: ClassVar[Optional[str]] = None
  keeps_secure_aggregation: ClassVar[bool] = False

  @abc.abstractmethod
  def aggregate(self, updates: Sequence[Update], weights
                ) -> tuple[list[tf.Tensor], dict]:
    """In-process: (aggregated update, metrics) of `updates`, one per client
    that reported; `weights` (the global model) shapes a zero update."""

  @abc.abstractmethod
  def tff_factory(self):
    """The `tff.aggregators.UnweightedAggregationFactory` of this aggregator
    (computes what `aggregate` does)."""


@dataclasses.dataclass(frozen=True)
class Mean(Aggregator):
  """Unweighted mean with plain `federated_sum`s: the server sees nothing
  more than the mean, but the round is not a secure aggregation."""

  name = "mean"

  def aggregate(self, updates, weights):
    if not updates:  # every update was excluded: the model stays unchanged
      return w.zeros_like(list(weights)), {}
    return w.average(updates), {}

  def tff_factory(self):
    import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
    return tff.aggregators.UnweightedMeanFactory()


@dataclasses.dataclass(frozen=True)
class SecureMean(Mean):
  """The papers' aggregation: the mean of the accepted updates, every sum a
  secure sum (`secure_tff.FaultTolerantSecureMeanFactory`).

  Faulty updates (NaN/Inf, or L2 norm above `max_update_norm`) are excluded
  before the sum; the others are clipped coordinate-wise to
  [-secure_sum_bound, secure_sum_bound] as `SecureSumFactory` does. Metrics:
  updates clipped above / below the bound, accepted and excluded updates.
  """

  secure_sum_bound: float = secure_tf.DEFAULT_SECURE_SUM_BOUND
  max_update_norm: float = secure_tf.DEFAULT_MAX_UPDATE_NORM
  name = "secure_mean"
  keeps_secure_aggregation = True

  def __post_init__(self):
    for field in ("secure_sum_bound", "max_update_norm"):
      if not getattr(self, field) > 0:
        raise ValueError(f"{field} must be positive, got "
                         f"{getattr(self, field)}")

  def aggregate(self, updates, weights):
    accepted = []
    upper_clipped = lower_clipped = 0
    for update in updates:
      _, ok = secure_tf.screen_update(update, self.max_update_norm)
      if not int(ok):
        continue
      upper, lower = secure_tf.count_clipped(update, self.secure_sum_bound)
      upper_clipped += upper
      lower_clipped += lower
      accepted.append(secure_tf.clip_like_secure_sum(update,
                                                     self.secure_sum_bound))
    mean, _ = super().aggregate(accepted, weights)
    return mean, {"secure_upper_clipped_count": upper_clipped,
                  "secure_lower_clipped_count": lower_clipped,
                  "accepted_updates": len(accepted),
                  "excluded_updates": len(updates) - len(accepted)}

  def tff_factory(self):
    from fedmeta_tf.aggregation import secure_tff  # pylint: disable=g-import-not-at-top
    return secure_tff.FaultTolerantSecureMeanFactory(
        secure_sum_bound=self.secure_sum_bound,
        max_update_norm=self.max_update_norm)


@dataclasses.dataclass(frozen=True)
class NormClip(Mean):
  """Norm-bound clipping (Sun et al. 2019): each update scaled to L2 norm <=
  `clip_norm`, then the mean; TFF's own `clipping_factory` around a mean.
  Metrics: `clipped_count`, as TFF's factory reports it."""

  clip_norm: float = 1.0
  name = "norm_clip"
  parameter = "clip_norm"

  def __post_init__(self):
    if not self.clip_norm > 0:
      raise ValueError(f"norm_clip: norm must be positive, got "
                       f"{self.clip_norm}")

  def aggregate(self, updates, weights):
    clipped, count = [], 0
    for update in updates:
      u, norm = robust_tf.clip_by_global_norm(
          [tf.constant(x, tf.float32) for x in update], self.clip_norm)
      clipped.append(u)
      count += int(norm > self.clip_norm)
    mean, _ = super().aggregate(clipped, weights)
    return mean, {"clipped_count": count}

  def tff_factory(self):
    from fedmeta_tf.defenses.server import robust_tff  # pylint: disable=g-import-not-at-top
    return robust_tff.norm_clip_factory(self.clip_norm)


class GatheredStatistic(Aggregator):
  """A robust statistic of every client's update, stacked per weight tensor
  (`robust_tf.py`); the TFF form gathers the updates at the server."""

  @abc.abstractmethod
  def statistic(self, stacked: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """list of [n, ...] tensors (n clients) -> list of [...] tensors."""

  def aggregate(self, updates, weights):
    stacked = [tf.stack([tf.constant(u[k], tf.float32) for u in updates])
               for k in range(len(updates[0]))]
    return self.statistic(stacked), {}

  def tff_factory(self):
    from fedmeta_tf.defenses.server import robust_tff  # pylint: disable=g-import-not-at-top
    return robust_tff.GatheredStatisticFactory(self.statistic, self.name)


@dataclasses.dataclass(frozen=True)
class Median(GatheredStatistic):
  """Coordinate-wise median (Yin et al. 2018)."""

  name = "median"

  def statistic(self, stacked):
    return robust_tf.coordinate_median(stacked)


@dataclasses.dataclass(frozen=True)
class TrimmedMean(GatheredStatistic):
  """Coordinate-wise mean after dropping floor(trim_fraction * n) values at
  each end (Yin et al. 2018)."""

  trim_fraction: float = 0.1
  name = "trimmed_mean"
  parameter = "trim_fraction"

  def __post_init__(self):
    if not 0 <= self.trim_fraction < 0.5:
      raise ValueError(f"trimmed_mean: trim fraction must be in [0, 0.5), "
                       f"got {self.trim_fraction}")

  def statistic(self, stacked):
    return robust_tf.trimmed_mean(stacked, trim_fraction=self.trim_fraction)


@dataclasses.dataclass(frozen=True)
class Krum(GatheredStatistic):
  """Krum (Blanchard et al. 2017): the update with the best score, assuming
  `num_byzantine` (f) attackers."""

  num_byzantine: int = 1
  name = "krum"
  parameter = "num_byzantine"
  num_selected: ClassVar[Optional[int]] = 1  # None: n - f

  def __post_init__(self):
    if self.num_byzantine < 0:
      raise ValueError(f"{self.name}: number of attackers f must be >= 0, "
                       f"got {self.num_byzantine}")

  def statistic(self, stacked):
    return robust_tf.multi_krum(stacked, num_byzantine=self.num_byzantine,
                                num_selected=self.num_selected)


@dataclasses.dataclass(frozen=True)
class MultiKrum(Krum):
  """Multi-Krum: the mean of the n - f updates with the best Krum scores."""

  name = "multi_krum"
  num_selected = None


AGGREGATORS = {cls.name: cls for cls in (SecureMean, Mean, Median, TrimmedMean,
                                         Krum, MultiKrum, NormClip)}


def parse_aggregator(
    text: str, *,
    secure_sum_bound: float = secure_tf.DEFAULT_SECURE_SUM_BOUND,
    max_update_norm: float = secure_tf.DEFAULT_MAX_UPDATE_NORM) -> Aggregator:
  """`--aggregator=name[:parameter]` -> its aggregator object.

  Args:
    text: the flag's value, e.g. `secure_mean`, `trimmed_mean:0.2`, `krum:1`.
    secure_sum_bound: the secure mean's coordinate bound (other aggregators
      ignore it).
    max_update_norm: the secure mean's fault threshold (likewise).

  Raises:
    ValueError: unknown name (the message lists the valid ones), a parameter
      given to an aggregator that takes none, or a malformed or out-of-range
      parameter or setting.
  """
  name, _, parameter = str(text).partition(":")
  cls = AGGREGATORS.get(name)
  if cls is None:
    raise ValueError(f"unknown aggregator {text!r}; valid: "
                     f"{', '.join(AGGREGATORS)} (robust ones take "
                     "name:parameter)")
  kwargs = {}
  if cls is SecureMean:
    kwargs = dict(secure_sum_bound=secure_sum_bound,
                  max_update_norm=max_update_norm)
  if parameter:
    if cls.parameter is None:
      raise ValueError(f"aggregator {name!r} takes no parameter, got "
                       f"{text!r}")
    default = {f.name: f.default for f in dataclasses.fields(cls)}[
        cls.parameter]
    try:
      kwargs[cls.parameter] = type(default)(parameter)
    except ValueError:
      raise ValueError(f"aggregator {name}: parameter must be a "
                       f"{type(default).__name__}, got {parameter!r}"
                       ) from None
  return cls(**kwargs)
