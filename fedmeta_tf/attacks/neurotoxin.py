"""Neurotoxin: the attacker's update kept off the coordinates benign
training changes most.

Zhang et al., ICML 2022, "Neurotoxin: Durable Backdoors in Federated
Learning", Algorithm 1: the attacker takes the benign direction (the paper:
the global update of the round before, theta_t - theta_{t-1}), finds the
top-k% of its coordinates by magnitude (S = top_k(|Delta|, k%)), and trains
on poisoned data with every gradient step projected onto the other
coordinates (g <- g * 1[not in S]). Coordinates benign clients rarely move
keep the backdoor after the attacker leaves (durability). The official code
masks over all layers at once (`aggregate_all_layer=1`) and its computer
vision runs mask the top 5% (`--gradmask_ratio 0.95`, the share *kept*).

Here (federated meta-learning, one-shot attack):

- the benign direction is the attacker's own benign Reptile update from
  theta_G (Algorithm 1 of the main paper on its clean pool, with the benign
  E, e and eta: what it would send as a benign client this round), since a
  client's work receives only the current global model and is stateless
  between rounds, so it cannot difference two global models. The official
  code does the same with its clean-data gradient (`grad_mask_cv`);
- the mask M = 1 - 1[top_k(|Delta_benign|, k%)], k = `ratio` of all
  trainable coordinates (floor, ties by index), is applied to the boosted
  update once, u_sent = M * lambda (theta_a - theta_G), not to each inner
  Adam step: the sent update is exactly zero on S, and equal to the
  unmasked boosted update elsewhere. (Masking each step would also change
  the trajectory on the kept coordinates; Reptile's inner steps run in
  `meta/reptile_tf.py`, shared with every client.) No norm projection: the
  boosting factor sets the update's size, as in the boosted attack.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

import tensorflow as tf

from fedmeta_tf.data import episodes as episodes_lib
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import weights as w

# The official code's computer-vision runs: the top 5% masked.
PAPER_RATIO = 0.05


def keep_mask(direction: w.Weights, ratio: float) -> w.Weights:
  """M: 0.0 on the floor(ratio * n) coordinates of largest |direction| over
  all n trainable coordinates together (Algorithm 1's top-k% set S), 1.0
  elsewhere; one tensor per weight, shaped like it."""
  flat = tf.concat([tf.reshape(tf.abs(d), [-1]) for d in direction], 0)
  n = tf.size(flat)
  k = tf.cast(tf.math.floor(tf.cast(n, tf.float64) * ratio), tf.int32)
  _, top = tf.math.top_k(flat, k=k, sorted=False)
  keep = tf.tensor_scatter_nd_update(tf.ones_like(flat), top[:, None],
                                     tf.zeros([k], flat.dtype))
  sizes = [tf.size(d) for d in direction]
  return [tf.reshape(part, tf.shape(d))
          for part, d in zip(tf.split(keep, sizes), direction)]


def project(update: w.Weights, mask: w.Weights) -> w.Weights:
  """Algorithm 1's projection, once on the sent update: u * M."""
  return [u * m for u, m in zip(update, mask)]


def benign_plan(work, client_data, round_num) -> reptile_tf.ReptilePlan:
  """The attacker's benign client work this round (`BenignReptile`'s plan
  on its own pool, seed and the benign E, e, eta)."""
  return reptile_tf.ReptilePlan(
      episode_fn=reptile_tf.pool_episode_fn(client_data["pool"], work.config),
      seed=episodes_lib.fold_seed(work.run_seed, episodes_lib.STREAM_TRAIN,
                                  round_num, client_data["client_id"]))


def benign_mask(work, model, optimizer, weights, client_data, round_num,
                ratio: float) -> w.Weights:
  """M from the attacker's benign update theta_benign - theta_G."""
  direction, _ = reptile_tf.reptile_client_update(
      model, optimizer, weights, plan=benign_plan(work, client_data,
                                                  round_num),
      config=work.config)
  return keep_mask(direction, ratio)


class EagerMasks:
  """M outside a tf.function (the in-process driver's `finish`, after the
  chunks): a learner of its own, built on first use from `model_fn`, one
  call at a time."""

  def __init__(self, work, ratio: float,
               model_fn: Optional[Callable[[], tf.keras.Model]]):
    self._work, self._ratio, self._model_fn = work, ratio, model_fn
    self._lock = threading.Lock()
    self._fn = None

  def __call__(self, weights, client_data, round_num) -> w.Weights:
    if self._model_fn is None:
      raise ValueError("Neurotoxin in chunks (the in-process driver) needs "
                       "the model_fn of BackdoorReptile")
    with self._lock:
      if self._fn is None:
        model, optimizer = reptile_tf.make_learner(
            self._model_fn, self._work.config.inner_lr)

        @tf.function(reduce_retracing=True)
        def mask_fn(weights, client_data, round_num):
          return benign_mask(self._work, model, optimizer, list(weights),
                             client_data, round_num, self._ratio)

        self._fn = mask_fn
      return self._fn([tf.convert_to_tensor(v) for v in weights], client_data,
                      tf.convert_to_tensor(round_num, tf.int64))
