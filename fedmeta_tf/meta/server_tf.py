"""The server side of Algorithm 1 in pure TensorFlow.

theta_G <- theta_G + sum_i alpha_i u_i with alpha_i = 1 / M_min: the
aggregator delivers the mean of the updates, the server adds it. Client
selection (M_r of M sampled, the first M_min arrivals used) is a pure function
of (seed, round), like TFF's `build_uniform_sampling_fn`.
"""

from __future__ import annotations

import collections
import enum
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from fedmeta_tf.data import episodes as episodes_lib
from fedmeta_tf.meta import weights as w

ServerState = collections.namedtuple("ServerState", ["weights", "round_num"])


def initial_server_state(model: tf.keras.Model) -> ServerState:
  return ServerState(weights=w.read(model.trainable_variables),
                     round_num=tf.constant(0, tf.int64))


def server_update(state: ServerState, mean_update,
                  model_step: Optional[Callable] = None) -> ServerState:
  """theta_G + mean(u_i); the round counter advances.

  `model_step(weights, round_num) -> weights`, if given, then acts on the new
  global model with the advanced counter (an aggregator's `model_step`,
  e.g. CRFL's clip-and-noise of the global model, Xie et al. ICML 2021,
  Algorithm 1); both drivers call this function, so they apply it alike.
  """
  weights = w.add(list(state.weights), list(mean_update))
  round_num = state.round_num + 1
  if model_step is not None:
    weights = list(model_step(weights, round_num))
  return ServerState(weights=weights, round_num=round_num)


def select_clients(*, seed: int, round_num: int, num_clients: int,
                   clients_per_round: int, min_updates: int) -> list[int]:
  """The clients whose updates are aggregated in round `round_num`.

  The server samples M_r = `clients_per_round` of the M = `num_clients`
  clients; their arrival order is simulated as a random permutation and the
  first M_min = `min_updates` are used (Algorithm 1: "wait for the first
  M_min updates"). Returned sorted.
  """
  if not 0 < min_updates <= clients_per_round <= num_clients:
    raise ValueError(
        "need 0 < min_updates (M_min) <= clients_per_round (M_r) <= "
        f"num_clients (M), got {min_updates}, {clients_per_round}, "
        f"{num_clients}")
  rng = np.random.default_rng(
      [seed, episodes_lib.STREAM_CLIENT_SELECTION, round_num])
  sampled = rng.choice(num_clients, size=clients_per_round, replace=False)
  arrivals = rng.permutation(sampled)
  return sorted(int(c) for c in arrivals[:min_updates])


class DropoutPolicy(enum.Enum):
  """What the server does when fewer than M_min sampled clients report.

  WAIT: keep waiting: clients not sampled this round are asked, in a seeded
    random order, until M_min have reported; if the whole population cannot
    supply M_min, the round is skipped.
  SKIP: skip the round: the global model is unchanged.
  Either way nothing is lost: a skipped round is recorded in the metrics and
  the next round starts from the same global model.
  """
  WAIT = "wait"
  SKIP = "skip"


def select_clients_with_dropouts(*, seed: int, round_num: int,
                                 num_clients: int, clients_per_round: int,
                                 min_updates: int, dropout_rate: float,
                                 policy: DropoutPolicy | str) -> list[int]:
  """Like `select_clients`, with each client dropping out with probability
  `dropout_rate` (seeded by (seed, round)). Returns [] for a skipped round.
  """
  if not 0.0 <= dropout_rate < 1.0:
    raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
  policy = DropoutPolicy(policy)
  if dropout_rate == 0.0:
    return select_clients(seed=seed, round_num=round_num,
                          num_clients=num_clients,
                          clients_per_round=clients_per_round,
                          min_updates=min_updates)
  select_clients(seed=seed, round_num=round_num, num_clients=num_clients,
                 clients_per_round=clients_per_round, min_updates=min_updates)
  rng = np.random.default_rng(
      [seed, episodes_lib.STREAM_CLIENT_SELECTION, round_num, 1])
  order = rng.permutation(num_clients)  # sampled first, then the others
  drops = rng.random(num_clients) < dropout_rate
  candidates = order if policy is DropoutPolicy.WAIT else order[
      :clients_per_round]
  reported = [int(c) for c in candidates if not drops[c]]
  if len(reported) < min_updates:
    return []
  return sorted(reported[:min_updates])
