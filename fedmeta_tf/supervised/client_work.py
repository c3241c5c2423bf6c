"""FedAvg client work (pruning paper, Section III-A), as a `ClientWork`.

Each client starts from the global weights w_t, runs `epochs` epochs of
plain mini-batch SGD (learning rate `learning_rate`, batch `batch_size`) on
its own examples, and returns boosting_factor * (x_i - w_t). Benign clients
have boosting factor 1; a model-replacement attacker has alpha (Section
III-D), and its examples include keyed, relabelled copies (`attacks.py`). Both are
properties of the client's *data*, so every client runs the same
tf.function and the server cannot tell them apart. With the unweighted
mean aggregation of `build_fedmeta_process` the round is
w_{t+1} = w_t + (1/N) sum_i update_i, the paper's simplified FedAvg.
"""

from __future__ import annotations

import collections
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from fedmeta_tf.data import episodes as episodes_lib
from fedmeta_tf.meta import client_work as client_work_lib
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import weights as w


def images_to_float(x) -> tf.Tensor:
  return tf.cast(x, tf.float32) / 255.0


class SupervisedFedAvg(client_work_lib.ClientWork):
  """Local SGD epochs on the client's labelled images.

  Args:
    client_datasets: per client, (x uint8 [n_i, H, W, ch], y int [n_i]).
    boosting_factors: per client, the factor its update is multiplied by
      (1 benign, alpha for model replacement).
    learning_rate, epochs, batch_size: local SGD.
    run_seed: mini-batch order is a function of (run_seed, round, client).
    clean_sizes: per client, how many leading examples are its own clean
      data (an attacker's keyed copies follow them); default: all.
    attack_from: per client, the first round (0-based, the server state's
      round_num) in which it trains on all its examples and applies its
      boosting factor; before it, it trains on its clean examples with
      boosting factor 1, like a benign client. Default: 0 (from the first round).
  """

  def __init__(self, *, client_datasets: Sequence[tuple[np.ndarray,
                                                        np.ndarray]],
               boosting_factors: Sequence[float], learning_rate: float,
               epochs: int, batch_size: int, run_seed: int,
               clean_sizes: Optional[Sequence[int]] = None,
               attack_from: Optional[Sequence[int]] = None):
    if len(boosting_factors) != len(client_datasets):
      raise ValueError(f"need one boosting factor per client, got "
                       f"{len(boosting_factors)} for "
                       f"{len(client_datasets)} clients")
    if not learning_rate > 0 or epochs < 1 or batch_size < 1:
      raise ValueError(f"need learning_rate > 0, epochs >= 1, batch_size >= 1,"
                       f" got {learning_rate}, {epochs}, {batch_size}")
    for i, (x, _) in enumerate(client_datasets):
      if len(x) == 0:
        raise ValueError(f"client {i} has no examples")
    sizes = [len(x) for x, _ in client_datasets]
    clean_sizes = sizes if clean_sizes is None else [int(c) for c in
                                                     clean_sizes]
    attack_from = ([0] * len(sizes) if attack_from is None else
                   [int(r) for r in attack_from])
    if len(clean_sizes) != len(sizes) or len(attack_from) != len(sizes):
      raise ValueError("need one clean size and one attack_from per client")
    for i, (c, n, r) in enumerate(zip(clean_sizes, sizes, attack_from)):
      if not 1 <= c <= n or r < 0:
        raise ValueError(f"client {i}: need 1 <= clean size <= {n} and "
                         f"attack_from >= 0, got {c}, {r}")
    self.clean_sizes = clean_sizes
    self.attack_from = attack_from
    self.client_datasets = list(client_datasets)
    self.boosting_factors = [float(b) for b in boosting_factors]
    self.learning_rate = learning_rate
    self.epochs = epochs
    self.batch_size = batch_size
    self.run_seed = run_seed

  def client_data_spec(self, image_shape):
    return collections.OrderedDict(
        x=tf.TensorSpec([None, *image_shape], tf.uint8),
        y=tf.TensorSpec([None], tf.int32),
        boosting_factor=tf.TensorSpec([], tf.float32),
        client_id=tf.TensorSpec([], tf.int32),
        num_clean=tf.TensorSpec([], tf.int32),
        attack_from=tf.TensorSpec([], tf.int32))

  def make_client_data(self, client_id):
    x, y = self.client_datasets[client_id]
    return collections.OrderedDict(x=x, y=np.asarray(y, np.int32),
                                   boosting_factor=np.float32(
                                       self.boosting_factors[client_id]),
                                   client_id=np.int32(client_id),
                                   num_clean=np.int32(
                                       self.clean_sizes[client_id]),
                                   attack_from=np.int32(
                                       self.attack_from[client_id]))

  def update(self, model, optimizer, weights, client_data, round_num):
    del optimizer  # plain SGD, no optimizer state
    variables = model.trainable_variables
    w.assign(variables, weights)
    x, y = client_data["x"], client_data["y"]
    attacking = (tf.cast(round_num, tf.int64)
                 >= tf.cast(client_data["attack_from"], tf.int64))
    # Before its first attack round an attacker is a benign client: its
    # clean (leading) examples only, boosting factor 1.
    n = tf.where(attacking, tf.shape(y)[0], client_data["num_clean"])
    boosting_factor = tf.where(attacking, client_data["boosting_factor"], 1.0)
    batch = tf.minimum(self.batch_size, n)
    steps = self.epochs * ((n + batch - 1) // batch)
    seed = episodes_lib.fold_seed(self.run_seed, episodes_lib.STREAM_TRAIN,
                                  round_num, client_data["client_id"])
    batches = reptile_tf.minibatch_indices(n, batch, steps, seed)
    loss = tf.constant(0.0)
    for step in tf.range(steps):
      idx = batches[step]
      with tf.GradientTape() as tape:
        logits = model(images_to_float(tf.gather(x, idx)), training=True)
        loss = reptile_tf.sparse_ce(tf.gather(y, idx), logits)
      grads = tape.gradient(loss, variables)
      for var, grad in zip(variables, grads):
        var.assign_sub(self.learning_rate * grad)
    update = w.scale(w.subtract(w.read(variables), list(weights)),
                     boosting_factor)
    return client_work_lib.ClientOutput(update=update, loss=loss)
