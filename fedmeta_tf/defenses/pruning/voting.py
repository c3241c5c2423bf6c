"""Federated neuron ranking: what clients report and how the server merges it
(pruning paper, Section IV-A/B, Fig. 2).

A "neuron" is a channel of the last conv layer; its activation on an image
is the sum of that channel's (post-ReLU) output over the spatial window, and
a client's record is the mean over its own images. Clients never send
activations, only:

* Ranking vote (IV-A): ranks 1..C in ascending order of activation (1 = the
  most dormant). The server averages the ranks, R_k = (1/N) sum_i R_k^i, and
  prunes in ascending order of R_k (most dormant first).
* Majority vote (IV-B): a 0/1 mask at pruning rate p: 0 for the floor(p*C)
  least active channels ("prune"), 1 otherwise ("keep"). The server sums the
  masks and prunes in ascending order of the votes to keep.

Ties are broken by channel index, so the order is deterministic.
"""

from __future__ import annotations

import enum

import numpy as np
import tensorflow as tf


class Vote(enum.Enum):
  RANKING = "ranking"
  MAJORITY = "majority"


def mean_channel_activation(activation_model: tf.keras.Model, images,
                            batch_size: int = 500) -> np.ndarray:
  """float [C]: per channel, the mean over images of the spatial sum of the
  activation (images already scaled as the model expects)."""
  total, count = None, 0
  for start in range(0, len(images), batch_size):
    act = activation_model(images[start:start + batch_size], training=False)
    act = tf.reshape(act, [tf.shape(act)[0], -1, act.shape[-1]])
    summed = tf.reduce_sum(tf.reduce_sum(act, axis=1), axis=0).numpy()
    total = summed if total is None else total + summed
    count += int(act.shape[0])
  if not count:
    raise ValueError("mean_channel_activation needs at least one image")
  return total / count


def client_ranking(activations: np.ndarray) -> np.ndarray:
  """int [C]: rank of each channel, 1 = least active (stable on ties)."""
  order = np.argsort(activations, kind="stable")
  ranks = np.empty(len(activations), np.int64)
  ranks[order] = np.arange(1, len(activations) + 1)
  return ranks


def client_majority_mask(activations: np.ndarray,
                         pruning_rate: float) -> np.ndarray:
  """int [C]: 0 for the floor(p * C) least active channels, 1 otherwise."""
  if not 0 <= pruning_rate <= 1:
    raise ValueError(f"pruning_rate must be in [0, 1], got {pruning_rate}")
  mask = np.ones(len(activations), np.int64)
  num_pruned = int(np.floor(pruning_rate * len(activations)))
  mask[np.argsort(activations, kind="stable")[:num_pruned]] = 0
  return mask


def client_report(activations: np.ndarray, vote: Vote,
                  pruning_rate: float = 0.5) -> np.ndarray:
  """What one client sends for `vote`."""
  if Vote(vote) is Vote.RANKING:
    return client_ranking(activations)
  return client_majority_mask(activations, pruning_rate)


def merge_reports(reports: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The server's merge of clients' reports [N, C] (ranks or masks): returns
  (pruning order: channels, most dormant first; the merged score [C], the
  mean rank or the number of keep votes divided by N)."""
  reports = np.asarray(reports, np.float64)
  if reports.ndim != 2 or len(reports) == 0:
    raise ValueError(f"reports must be [N >= 1, C], got shape {reports.shape}")
  score = reports.mean(axis=0)
  return np.argsort(score, kind="stable"), score
