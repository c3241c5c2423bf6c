"""Server defenses that keep secure aggregation: their aggregator
objects and the TF arithmetic both drivers share.

Each defense needs only sums of values the clients compute themselves, so
in the TFF form (`secure_defenses_tff.py`) every aggregation is a secure sum
and the server still learns no single update (main paper, Section 2.1):

    weak_dp[:clip=C,noise=z]   "weak differential privacy" against backdoors
        (Sun et al. 2019, "Can You Really Backdoor Federated Learning?",
        the norm-bounding and weak-DP defenses; the Gaussian mechanism of
        DP-FedAvg, McMahan et al. ICLR 2018, Algorithm 1): each update
        clipped to L2 norm C, secure sum, + N(0, (z C)^2) per coordinate,
        divided by the number of accepted updates
    robust_lr[:theta=k,flip_lr=f]  the robust learning rate (Ozdayi et al.,
        AAAI 2021, "Defending against Backdoors in Federated Learning with
        Robust Learning Rate", the robust learning rate rule): the secure
        mean, times a per-coordinate server learning rate of 1 where the
        clients' sign agreement |sum_i sign(u_i)| >= theta and f (the
        paper's -1) elsewhere; the agreement is a second secure sum, of the
        clients' sign vectors
    crfl[:rho=R,sigma=S,noise_seed=N]  CRFL's training (Xie et al., ICML
        2021, "CRFL: Certifiably Robust Federated Learning against Backdoor
        Attacks", Algorithm 1, no certification): the secure mean, then a
        model step: the new global model clipped to L2 norm R, plus
        N(0, S^2) per parameter, seeded by (N, round)

As every client-side step under secure aggregation, the signs are each
client's own report: an attacker may send signs unrelated to its update,
though the secure sum's bound 1 limits it to one vote per coordinate.
Both screen each update first as the secure mean does (`secure_tf.
screen_update`: a NaN/Inf or absurd-norm update is excluded, counted by a
secure sum). CRFL's perturbation (`crfl_perturb_model`) acts on the global
model, which the TFF aggregation never sees: it is the aggregator's
`model_step`, which both drivers apply in the server update.

`WeakDp` and `RobustLr` subclass `base.Aggregator`; CRFL's object is
`aggregators.Crfl`, a `SecureMean` whose model step is `crfl_perturb_model`.
All are listed in `aggregators.AGGREGATORS`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional, Sequence

import numpy as np
import tensorflow as tf

from fedmeta_tf.aggregation import secure_tf
from fedmeta_tf.aggregation.base import Aggregator
from fedmeta_tf.defenses.server import robust_tf


def screen_updates(updates, max_update_norm: float):
  """(accepted updates as float32 tensors, excluded count): the updates a
  secure-sum round would accept (`secure_tf.screen_update`)."""
  accepted = []
  for update in updates:
    tensors = [tf.constant(u, tf.float32) for u in update]
    _, ok = secure_tf.screen_update(tensors, max_update_norm)
    if int(ok):
      accepted.append(tensors)
  return accepted, len(updates) - len(accepted)


def sum_updates(updates, like) -> list[tf.Tensor]:
  """Coordinate-wise sum of `updates`; zeros shaped like `like` if none."""
  if not updates:
    return [tf.zeros_like(tf.constant(x, tf.float32)) for x in like]
  return [tf.add_n(list(ws)) for ws in zip(*updates)]


def divide_by_count(total, count) -> list[tf.Tensor]:
  """`total / max(count, 1)`: the mean over `count` updates (a zero sum, or
  the bare noise of weak DP, when no update was accepted)."""
  scale = 1.0 / tf.cast(tf.maximum(count, 1), tf.float32)
  return [t * scale for t in total]


def add_gaussian_noise(values, stddev: float, seed: Optional[int] = None
                       ) -> list[tf.Tensor]:
  """values + N(0, stddev^2) per coordinate (the Gaussian mechanism)."""
  return [v + tf.random.normal(tf.shape(v), stddev=stddev, seed=seed)
          for v in values]


def seeded_gaussian_noise(values, stddev: float, seed) -> list[tf.Tensor]:
  """values + N(0, stddev^2) per coordinate, drawn by `tf.random.
  stateless_normal` from `seed` (two integers): one draw over all the
  coordinates, split per tensor, so the same seed gives the same noise in
  both drivers (in a tf.function and in a TFF computation alike)."""
  values = [tf.convert_to_tensor(v, tf.float32) for v in values]
  sizes = [tf.size(v) for v in values]
  noise = tf.random.stateless_normal(
      [tf.add_n(sizes)], seed=tf.cast(seed, tf.int64), stddev=stddev)
  return [v + tf.reshape(n, tf.shape(v))
          for v, n in zip(values, tf.split(noise, sizes))]


def update_signs(update) -> list[tf.Tensor]:
  """sign(u) per coordinate as int32 in {-1, 0, 1}: what each client adds to
  the second secure sum of robust_lr (bound 1, integer: exact)."""
  return [tf.cast(tf.sign(u), tf.int32) for u in update]


def robust_learning_rate(sign_sum, *, theta: int, flip_lr: float
                         ) -> list[tf.Tensor]:
  """Per coordinate, 1 where |sum_i sign(u_i)| >= theta, else `flip_lr`
  (Ozdayi et al. 2021, the robust learning rate rule, with the server's
  learning rate eta = 1 as in Algorithm 1 of the main paper)."""
  return [tf.where(tf.abs(s) >= theta, 1.0, float(flip_lr))
          for s in sign_sum]


def flipped_fraction(sign_sum, *, theta: int) -> tf.Tensor:
  """Fraction of coordinates whose sign agreement is below `theta`."""
  low = tf.add_n([tf.reduce_sum(tf.cast(tf.abs(s) < theta, tf.float32))
                  for s in sign_sum])
  size = sum(int(np.prod(s.shape)) for s in sign_sum)
  return low / float(max(size, 1))


def crfl_perturb_model(weights, *, rho: float, sigma: float,
                       seed=None) -> list[tf.Tensor]:
  """CRFL's training-time perturbation of the global model (Xie et al., ICML
  2021, "CRFL: Certifiably Robust Federated Learning against Backdoor
  Attacks", Algorithm 1, server side): clip the new global model's
  parameters to L2 norm rho, then add N(0, sigma^2) to each (no
  certification here).

  `seed`: two integers for `seeded_gaussian_noise` (`aggregators.Crfl`'s
  model step passes (noise_seed, round)); None: unseeded. sigma = 0 adds nothing.
  """
  clipped, _ = robust_tf.clip_by_global_norm(
      [tf.convert_to_tensor(x, tf.float32) for x in weights], rho)
  if not sigma > 0:
    return clipped
  if seed is None:
    return add_gaussian_noise(clipped, sigma)
  return seeded_gaussian_noise(clipped, sigma, seed)


@dataclasses.dataclass(frozen=True)
class WeakDp(Aggregator):
  """Weak DP (Sun et al. 2019; DP-FedAvg's Gaussian mechanism): screen, clip
  each update to L2 norm `clip`, sum, add N(0, (noise * clip)^2), divide by
  the number of accepted updates. TFF form: TFF's `DifferentiallyPrivate
  Factory` (a `GaussianSumQuery`) whose record sum is a `SecureSumFactory`
  of bound `clip`, and a secure count (`secure_defenses_tff.py`).

  The noise is drawn unseeded, fresh each round, in both drivers (as TFF's
  `GaussianSumQuery` draws it): with noise > 0 a run is not bit-for-bit
  reproducible. Metrics: accepted / excluded updates, updates whose norm was
  clipped.
  """

  clip: float = 1.0
  noise: float = 0.1
  max_update_norm: float = secure_tf.DEFAULT_MAX_UPDATE_NORM
  name: ClassVar[str] = "weak_dp"
  parameter: ClassVar[Optional[str]] = "clip"
  keys: ClassVar[tuple] = ("clip", "noise")
  keeps_secure_aggregation: ClassVar[bool] = True

  def __post_init__(self):
    if not self.clip > 0:
      raise ValueError(f"weak_dp: clip must be positive, got {self.clip}")
    if not self.noise >= 0:
      raise ValueError(f"weak_dp: noise must be >= 0, got {self.noise}")

  def aggregate(self, updates, weights):
    accepted, excluded = screen_updates(updates, self.max_update_norm)
    clipped, clipped_count = [], 0
    for update in accepted:
      u, norm = robust_tf.clip_by_global_norm(update, self.clip)
      clipped.append(u)
      clipped_count += int(norm > self.clip)
    total = add_gaussian_noise(sum_updates(clipped, weights),
                               self.noise * self.clip)
    return divide_by_count(total, len(accepted)), {
        "accepted_updates": len(accepted), "excluded_updates": excluded,
        "clipped_count": clipped_count}

  def tff_factory(self):
    from fedmeta_tf.aggregation import secure_defenses_tff  # pylint: disable=g-import-not-at-top
    return secure_defenses_tff.WeakDpFactory(
        clip=self.clip, noise_multiplier=self.noise,
        max_update_norm=self.max_update_norm)


@dataclasses.dataclass(frozen=True)
class RobustLr(Aggregator):
  """Robust learning rate (Ozdayi et al., AAAI 2021): the secure mean (each
  accepted update clipped coordinate-wise to the secure-sum bound, as
  `secure_mean` does) times, per coordinate, 1 where the sign agreement
  |sum_i sign(u_i)| over the accepted updates is >= `theta`, else `flip_lr`
  (-1: the paper's rule, the step reversed; 0: the coordinate held).

  Metrics: `flipped_fraction` (coordinates below theta), accepted /
  excluded updates.
  """

  theta: int = 4
  flip_lr: float = -1.0
  secure_sum_bound: float = secure_tf.DEFAULT_SECURE_SUM_BOUND
  max_update_norm: float = secure_tf.DEFAULT_MAX_UPDATE_NORM
  name: ClassVar[str] = "robust_lr"
  parameter: ClassVar[Optional[str]] = "theta"
  keys: ClassVar[tuple] = ("theta", "flip_lr")
  keeps_secure_aggregation: ClassVar[bool] = True

  def __post_init__(self):
    if self.theta < 0:
      raise ValueError(f"robust_lr: theta must be >= 0, got {self.theta}")
    if not -1.0 <= self.flip_lr <= 1.0:
      raise ValueError(f"robust_lr: flip_lr must be in [-1, 1], got "
                       f"{self.flip_lr}")
    if not self.secure_sum_bound > 0:
      raise ValueError(f"secure_sum_bound must be positive, got "
                       f"{self.secure_sum_bound}")

  def aggregate(self, updates, weights):
    accepted, excluded = screen_updates(updates, self.max_update_norm)
    clipped = [secure_tf.clip_like_secure_sum(u, self.secure_sum_bound)
               for u in accepted]
    mean = divide_by_count(sum_updates(clipped, weights), len(accepted))
    sign_sum = [tf.zeros_like(m, tf.int32) for m in mean]
    for update in accepted:
      sign_sum = [s + t for s, t in zip(sign_sum, update_signs(update))]
    rates = robust_learning_rate(sign_sum, theta=self.theta,
                                 flip_lr=self.flip_lr)
    return [r * m for r, m in zip(rates, mean)], {
        "flipped_fraction": float(flipped_fraction(sign_sum,
                                                   theta=self.theta)),
        "accepted_updates": len(accepted), "excluded_updates": excluded}

  def tff_factory(self):
    from fedmeta_tf.aggregation import secure_defenses_tff  # pylint: disable=g-import-not-at-top
    return secure_defenses_tff.RobustLrFactory(
        theta=self.theta, flip_lr=self.flip_lr,
        secure_sum_bound=self.secure_sum_bound,
        max_update_norm=self.max_update_norm)


# CRFL's aggregator is `aggregators.Crfl`: the secure mean (it subclasses
# `aggregators.SecureMean`) plus `crfl_perturb_model` as its model step.
SECURE_DEFENSES: Sequence[type] = (WeakDp, RobustLr)
