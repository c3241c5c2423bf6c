"""FLAME and FoolsGold: plaintext baselines the papers' defenses compare to.

Two aggregators (`base.Aggregator`) whose rule needs every client's
update at the server, so neither keeps secure aggregation (the TFF round's
`tff.test.assert_not_contains_unsecure_aggregation` fails, as for median
and Krum: tests/defenses/server/flame_foolsgold_test.py):

    flame[:lambda]  FLAME (Nguyen et al. 2022): majority cluster by cosine
                    distance, clip to the median norm, Gaussian noise
                    lambda * S_t (default lambda 0.001); also
                    `flame:noise_lambda=L,noise_seed=s`
                    (`defenses/server/flame_tf.py`)
    foolsgold[:kappa]  FoolsGold (Fung et al. 2020), per round: weights
                    from the largest cosine similarity to another client,
                    with pardoning and the logit (confidence kappa, default
                    1), then the weighted mean
                    (`defenses/server/foolsgold_tf.py`)

Both forms compute the same thing: `aggregate` calls the pure-TF function
eagerly; `tff_factory` gathers the updates at the server with
`robust_tff.GatheredStatisticFactory` and calls it in the `report`. Each
rule's metrics are the in-process metrics and the TFF measurements, by the
same names.

The classes subclass `base.Aggregator` and are listed in
`aggregators.AGGREGATORS` (`--aggregator=flame[:noise_lambda]`,
`--aggregator=foolsgold[:kappa]`).
"""

from __future__ import annotations

import abc
import collections
import dataclasses
from typing import ClassVar, Optional, Sequence

import tensorflow as tf

from fedmeta_tf.aggregation.base import Aggregator
from fedmeta_tf.defenses.server import flame_tf
from fedmeta_tf.defenses.server import foolsgold_tf
from fedmeta_tf.meta import weights as w


class MeasuredStatistic(Aggregator):
  """An `aggregators.Aggregator` computing a statistic of every client's
  update (like `aggregators.GatheredStatistic`) that also reports scalar
  metrics (`metric_names`, in the order `measured_statistic` returns them).
  The TFF form gathers the updates at the server: no secure aggregation.
  """

  name: ClassVar[str]
  parameter: ClassVar[Optional[str]] = None
  keys: ClassVar[tuple] = ()
  keeps_secure_aggregation: ClassVar[bool] = False
  metric_names: ClassVar[tuple[str, ...]] = ()

  @abc.abstractmethod
  def measured_statistic(self, stacked: Sequence[tf.Tensor]
                         ) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
    """list of [n, ...] tensors -> (list of [...] tensors, scalar metrics)."""

  def aggregate(self, updates, weights):
    if not updates:  # every update was excluded: the model stays unchanged
      return w.zeros_like(list(weights)), {}
    stacked = [tf.stack([tf.constant(u[k], tf.float32) for u in updates])
               for k in range(len(updates[0]))]
    update, metrics = self.measured_statistic(stacked)
    return update, {name: value.numpy().item()
                    for name, value in zip(self.metric_names, metrics)}

  def tff_factory(self):
    import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
    tff.aggregators.UnweightedAggregationFactory.register(
        MeasuredGatheredFactory)
    return MeasuredGatheredFactory(self.measured_statistic, self.name,
                                   self.metric_names)


class MeasuredGatheredFactory:
  """A `tff.aggregators.UnweightedAggregationFactory` (registered as one by
  `MeasuredStatistic.tff_factory`): `robust_tff.GatheredStatisticFactory`
  over the statistic followed by its metrics, the metrics split off at the
  server into the measurements. Reveals every update to the server."""

  def __init__(self, measured_statistic, name: str,
               metric_names: Sequence[str]):
    self._measured_statistic = measured_statistic
    self.name = name
    self._metric_names = tuple(metric_names)

  def create(self, value_type):
    """The `tff.templates.AggregationProcess` for `value_type` (a flat list
    of tensors)."""
    import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
    from fedmeta_tf.defenses.server import robust_tff  # pylint: disable=g-import-not-at-top
    size = len(tff.to_type(value_type))
    names = self._metric_names
    measured = self._measured_statistic

    def flat(stacked):
      update, metrics = measured(stacked)
      return list(update) + list(metrics)

    inner = robust_tff.GatheredStatisticFactory(flat, self.name).create(
        value_type)
    flat_type = inner.next.type_signature.result.result.member

    @tff.tensorflow.computation(flat_type)
    def take_update(values):
      return [values[k] for k in range(size)]

    @tff.tensorflow.computation(flat_type)
    def take_metrics(values):
      return collections.OrderedDict(
          (name, values[size + k]) for k, name in enumerate(names))

    @tff.federated_computation(inner.next.type_signature.parameter)
    def next_fn(state, value):
      output = inner.next(state, value)
      return tff.templates.MeasuredProcessOutput(
          state=output.state,
          result=tff.federated_map(take_update, output.result),
          measurements=tff.federated_map(take_metrics, output.result))

    return tff.templates.AggregationProcess(inner.initialize, next_fn)


@dataclasses.dataclass(frozen=True)
class Flame(MeasuredStatistic):
  """FLAME (Nguyen et al., USENIX Security 2022, Algorithm 1) on updates:
  the HDBSCAN majority cluster by cosine distance, each admitted update
  clipped to the median norm S_t of all updates, their mean, plus
  N(0, (noise_lambda * S_t)^2) per coordinate. Metrics: `flame_admitted`
  (L), `flame_clip_bound` (S_t). Deviations: `flame_tf.py`."""

  noise_lambda: float = flame_tf.DEFAULT_NOISE_LAMBDA
  noise_seed: int = 0
  name = "flame"
  parameter = "noise_lambda"
  keys = ("noise_lambda", "noise_seed")
  metric_names = ("flame_admitted", "flame_clip_bound")

  def __post_init__(self):
    if not self.noise_lambda >= 0:
      raise ValueError(f"flame: noise lambda must be >= 0, got "
                       f"{self.noise_lambda}")

  def measured_statistic(self, stacked):
    update, admitted, clip_bound = flame_tf.flame(
        stacked, noise_lambda=self.noise_lambda, noise_seed=self.noise_seed)
    return update, [admitted, clip_bound]


@dataclasses.dataclass(frozen=True)
class FoolsGold(MeasuredStatistic):
  """FoolsGold (Fung et al., RAID 2020, Algorithm 1) per round: weights
  from each client's pardoned maximum cosine similarity to another, the
  logit (confidence `kappa`, paper 1), then the weighted mean. Metrics:
  `foolsgold_weight_sum` (sum of the weights, n when nobody is
  down-weighted), `foolsgold_zeroed` (clients given weight 0). Deviations
  (no history across rounds): `foolsgold_tf.py`."""

  kappa: float = 1.0
  name = "foolsgold"
  parameter = "kappa"
  metric_names = ("foolsgold_weight_sum", "foolsgold_zeroed")

  def __post_init__(self):
    if not self.kappa > 0:
      raise ValueError(f"foolsgold: kappa must be positive, got "
                       f"{self.kappa}")

  def measured_statistic(self, stacked):
    update, alpha = foolsgold_tf.foolsgold(stacked, kappa=self.kappa)
    zeroed = tf.reduce_sum(tf.cast(tf.equal(alpha, 0.0), tf.int32))
    return update, [tf.reduce_sum(alpha), zeroed]


PLAINTEXT_DEFENSES = (Flame, FoolsGold)
