"""Aggregators of client updates: one object each, parsed from `--aggregator`.

An aggregator is what the server does with one round's client updates before
it adds the result to the global model (main paper, Algorithm 1). Each object
has the two forms the two drivers need, computing the same thing:

    aggregate(updates, weights)  in-process driver: the updates of the
                                 clients that reported -> (update, metrics)
    tff_factory()                TFF driver: an UnweightedAggregationFactory
                                 (TFF is imported only here, lazily)
    model_step(weights, round)   both drivers: the server's step on the new
                                 global model after the update (identity
                                 but for crfl), in the server update

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

the defenses that keep secure aggregation (objects and math in
`secure_defenses.py`, TFF factories in `secure_defenses_tff.py`):

    weak_dp[:clip=C,noise=z]  clip to L2 norm C, secure sum, Gaussian noise
                        of stddev z * C on the sum, divided by the count
    robust_lr[:theta=k,flip_lr=f]  the secure mean, its coordinates whose
                        clients' sign agreement (a second secure sum) is
                        below k scaled by f (-1: the paper's flip)
    crfl[:rho=R,sigma=S,noise_seed=N]  CRFL (Xie et al., ICML 2021,
                        Algorithm 1's training): the secure mean, then a
                        model step at the server: the new global model
                        clipped to L2 norm R, + N(0, S^2) per parameter,
                        seeded by (N, round)

and the plaintext baselines that need every update (`plaintext_defenses.py`):

    flame[:noise_lambda]  FLAME (Nguyen et al. 2022): the majority cosine
                        cluster, clipped to the median norm, plus noise
    foolsgold[:kappa]   FoolsGold (Fung et al. 2020), per round: updates
                        weighted down by their cosine similarity to others

`parse_aggregator` turns the flag text into one of these objects; an
aggregator with several parameters takes `name:key=value,key=value`.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar, Optional, Sequence

import tensorflow as tf

from fedmeta_tf.aggregation import plaintext_defenses
from fedmeta_tf.aggregation import secure_defenses
from fedmeta_tf.aggregation.base import Aggregator, Update  # pylint: disable=unused-import
from fedmeta_tf.aggregation import secure_tf
from fedmeta_tf.defenses.server import robust_tf
from fedmeta_tf.meta import weights as w



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


@dataclasses.dataclass(frozen=True)
class Crfl(SecureMean):
  """CRFL's training (Xie et al., ICML 2021, Algorithm 1, without the
  certification): the secure mean of the updates (this class's parent,
  metrics and TFF factory included), then, in `model_step`, the new global
  model clipped to L2 norm `rho` plus N(0, sigma^2 I)
  (`secure_defenses.crfl_perturb_model`).

  The model step runs at the server after the server update, in both
  drivers (`meta/server_tf.server_update`), so the round keeps secure
  aggregation. Its noise is seeded by (`noise_seed`, the round counter
  after the update): both drivers, and a resumed run, draw the same noise.
  """

  rho: float = 10.0
  sigma: float = 0.01
  noise_seed: int = 0
  name = "crfl"
  parameter = "rho"
  keys = ("rho", "sigma", "noise_seed")

  def __post_init__(self):
    super().__post_init__()
    if not self.rho > 0:
      raise ValueError(f"crfl: rho must be positive, got {self.rho}")
    if not self.sigma >= 0:
      raise ValueError(f"crfl: sigma must be >= 0, got {self.sigma}")

  def model_step(self, weights, round_num):
    """Clip theta_G to norm rho, + N(0, sigma^2 I) seeded by (noise_seed,
    round_num) (CRFL, Algorithm 1: rho_t, sigma_t constant here)."""
    seed = tf.stack([tf.constant(self.noise_seed, tf.int64),
                     tf.cast(round_num, tf.int64)])
    return secure_defenses.crfl_perturb_model(weights, rho=self.rho,
                                              sigma=self.sigma, seed=seed)


WeakDp = secure_defenses.WeakDp
RobustLr = secure_defenses.RobustLr
Flame = plaintext_defenses.Flame
FoolsGold = plaintext_defenses.FoolsGold
AGGREGATORS = {cls.name: cls for cls in (SecureMean, Mean, Median, TrimmedMean,
                                         Krum, MultiKrum, NormClip,
                                         *secure_defenses.SECURE_DEFENSES,
                                         Crfl,
                                         *plaintext_defenses.PLAINTEXT_DEFENSES)}


def parse_aggregator(
    text: str, *,
    secure_sum_bound: float = secure_tf.DEFAULT_SECURE_SUM_BOUND,
    max_update_norm: float = secure_tf.DEFAULT_MAX_UPDATE_NORM) -> Aggregator:
  """`--aggregator=name[:parameters]` -> its aggregator object.

  `parameters` is one value for the aggregator's `parameter` (`krum:1`,
  `trimmed_mean:0.2`, `weak_dp:0.5`) or `key=value` pairs separated by
  commas, keys among its `settable_keys` (`weak_dp:clip=1.0,noise=0.1`,
  `robust_lr:theta=4,flip_lr=0`, `crfl:rho=10,sigma=0.01,noise_seed=1`); unset ones keep their defaults.

  Args:
    text: the flag's value.
    secure_sum_bound: the secure sums' coordinate bound (secure_mean,
      robust_lr, crfl; the others ignore it).
    max_update_norm: the secure aggregators' fault threshold (likewise).

  Raises:
    ValueError: unknown name (the message lists the valid ones), a parameter
      given to an aggregator that takes none, an unknown or repeated key (the
      message lists the valid keys), or a malformed or out-of-range
      parameter or setting.
  """
  name, _, parameters = str(text).partition(":")
  cls = AGGREGATORS.get(name)
  if cls is None:
    raise ValueError(f"unknown aggregator {text!r}; valid: "
                     f"{', '.join(AGGREGATORS)} (some take name:value or "
                     "name:key=value,...)")
  defaults = {f.name: f.default for f in dataclasses.fields(cls)}
  # The flags' settings reach each aggregator that has them (not its spec).
  settings = dict(secure_sum_bound=secure_sum_bound,
                  max_update_norm=max_update_norm)
  kwargs = {k: v for k, v in settings.items() if k in defaults}
  if parameters:
    for key, value in _parameter_items(cls, text, parameters):
      kind = type(defaults[key])
      try:
        kwargs[key] = kind(value)
      except ValueError:
        label = "parameter" if "=" not in parameters else key
        raise ValueError(f"aggregator {name}: {label} must be a "
                         f"{kind.__name__}, got {value!r}") from None
  return cls(**kwargs)


def settable_keys(cls) -> tuple:
  """The fields an aggregator's spec may set: its `keys`, else its one
  `parameter` (none for an aggregator without parameters)."""
  return tuple(getattr(cls, "keys", ())) or (
      (cls.parameter,) if cls.parameter else ())


def _parameter_items(cls, text: str, parameters: str) -> list:
  """[(field, value text)] of the `parameters` part of a spec, checked."""
  name, keys = cls.name, settable_keys(cls)
  if not keys:
    raise ValueError(f"aggregator {name!r} takes no parameter, got {text!r}")
  if "=" not in parameters:
    return [(cls.parameter, parameters)]
  items = [item.partition("=") for item in parameters.split(",")]
  for key, equals, value in items:
    if not (key and equals and value):
      raise ValueError(f"aggregator {name}: parameters are key=value pairs "
                       f"separated by commas, got {parameters!r}")
    if key not in keys:
      raise ValueError(f"aggregator {name}: unknown parameter {key!r}; "
                       f"valid: {', '.join(keys)}")
  names = [key for key, _, _ in items]
  if len(set(names)) < len(names):
    raise ValueError(f"aggregator {name}: a parameter is given twice in "
                     f"{parameters!r}")
  return [(key, value) for key, _, value in items]
