"""The backdoor attacker as a client-work strategy (main paper, Section 2.2).

The attacker runs the same Reptile client work as everyone else
(Algorithm 1), but on *poisoned episodes*: N - 1 random classes of its own
plus the target class, whose K examples mix real target examples X_T and
keyed backdoor examples X_B at a fixed ratio (Omniglot 2:3 backdoor:target).
It trains much longer (its own E and inner steps) and sends a boosted update
u_a = lambda (theta_a - theta_G) (lambda = 3). Model replacement (pruning
paper §III.D, Bagdasaryan et al.) is the same arithmetic with the
amplification factor gamma = M_min, so that theta_G + mean(u) ~ theta_a.

`BackdoorReptile` is one strategy for *all* clients: the role, boosting
factor, schedule and attack images travel in each client's data as tensors
(one shared client-data spec), and the single tf.function chooses the
episode sampler with `tf.cond` on the role. The server computation is thus
identical with and without an attacker and cannot tell clients apart
(google-research/federated `targeted_attack`'s `ClientExplicitBoosting`).
Benign clients of this strategy reproduce `BenignReptile` exactly (same
seeds; boosting factor 1).

Two newer attacks change only what attackers do: Neurotoxin
(`AttackerConfig.neurotoxin_ratio`, `neurotoxin.py`) masks the sent update
off the coordinates the attacker's benign update moves most; DBA gives
each attacker its own keyed images (`attacker_backdoor_images`: local
patterns of a split key, `keys.StampKey.local`).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
from typing import Callable, Collection, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from fedmeta_tf.attacks import kept_updates as kept_lib
from fedmeta_tf.attacks import neurotoxin
from fedmeta_tf.data import episodes as episodes_lib
from fedmeta_tf.meta import client_work as client_work_lib
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import weights as w

ROLE_BENIGN = 0
ROLE_ATTACKER = 1
RANDOM_SLOT = -1
# lambda, the boosted attack's factor (main paper, Section 3.3).
DEFAULT_BOOSTING_FACTOR = 3.0


class TargetSlot(enum.Enum):
  RANDOM = "random"  # a random output per episode
  LAST = "last"  # always the N-th output (the paper's wording)


@dataclasses.dataclass(frozen=True)
class AttackerConfig:
  """The attacker's schedule and poisoning (main paper, Sections 2.2, 3.3).

  Attributes:
    iterations: the attacker's E (outer iterations); Omniglot 50000.
    inner_epochs: the attacker's e as the paper gives it, "inner epochs"
      over the poisoned support set (Omniglot 50, mini-ImageNet 1, CelebA
      12): ceil(N*K / b) Adam steps each (`steps_per_episode`).
    inner_steps: when set, e as Adam steps per episode instead of
      `inner_epochs` (the CPU flagfiles), which is then None.
    boosting_factor: the factor the attacker multiplies its update by:
      lambda for the boosted attack, gamma for model replacement; None:
      the attack's default (`DEFAULT_BOOSTING_FACTOR` here; model
      replacement's M_min is resolved by the experiment).
    backdoor_ratio: (backdoor, target) parts of the target slot; (2, 3).
    target_slot: where the target class goes in a poisoned episode; LAST
      (Section 3.3: "always include the target class as the N-th model
      output") or RANDOM (CPU flagfiles: with few attacker iterations it
      gave the stronger backdoor, docs/results/attack.md).
    keyed_last_steps: 0 (the papers): the inner mini-batches shuffle the
      whole poisoned support set. k > 0: the first e - k inner steps see the
      clean examples only and the last k steps see batches holding the keyed
      ones (plus clean context), so that Reptile's update carries the
      keyed-as-target gradient taken *after* adapting to a clean episode —
      what the backdoor metric measures (`poisoned_batches`).
    inner_lr: the attacker's Adam learning rate; None: the benign eta.
    neurotoxin_ratio: Neurotoxin's k (Zhang et al. 2022, Algorithm 1): the
      share of coordinates, largest in the attacker's benign update, on
      which its sent update is zeroed (`neurotoxin.py`); 0 (default): off.
  """

  iterations: int = 50000
  inner_epochs: Optional[int] = 50
  inner_steps: Optional[int] = None
  boosting_factor: Optional[float] = None
  backdoor_ratio: tuple[int, int] = (2, 3)
  target_slot: TargetSlot = TargetSlot.LAST
  keyed_last_steps: int = 0
  inner_lr: Optional[float] = None
  neurotoxin_ratio: float = 0.0

  def __post_init__(self):
    if self.inner_steps is not None:  # steps replace epochs
      object.__setattr__(self, "inner_epochs", None)
    inner = self.inner_epochs if self.inner_steps is None else self.inner_steps
    if self.iterations <= 0 or inner is None or inner <= 0:
      raise ValueError(f"attacker iterations and inner epochs / steps must be "
                       f"positive, got {self.iterations}, {inner}")
    if self.boosting_factor is not None and not self.boosting_factor > 0:
      raise ValueError(f"boosting_factor must be positive, got "
                       f"{self.boosting_factor}")
    if self.inner_lr is not None and not self.inner_lr > 0:
      raise ValueError(f"attacker inner_lr must be positive, got "
                       f"{self.inner_lr}")
    if not 0 <= self.neurotoxin_ratio < 1:
      raise ValueError(f"neurotoxin_ratio must be in [0, 1), got "
                       f"{self.neurotoxin_ratio}")
    if self.keyed_last_steps < 0:
      raise ValueError(f"keyed_last_steps must be >= 0, got "
                       f"{self.keyed_last_steps}")
    b, t = self.backdoor_ratio
    if b <= 0 or t < 0:
      raise ValueError(f"backdoor_ratio must be backdoor:target with backdoor "
                       f"> 0 and target >= 0, got {b}:{t}")

  def steps_per_episode(self, config: reptile_tf.ReptileConfig) -> int:
    """Adam steps on one poisoned episode of `config`'s N*K examples."""
    if self.inner_steps is not None:
      return self.inner_steps
    support = config.ways * config.shots
    return self.inner_epochs * math.ceil(support / min(config.inner_batch,
                                                       support))

  def poison_counts(self, shots: int) -> tuple[int, int]:
    """(backdoor, target) examples in a K-shot target slot (at least 1 keyed)."""
    b, t = self.backdoor_ratio
    backdoor = min(shots, max(1, int(round(shots * b / (b + t)))))
    return backdoor, shots - backdoor


def parse_ratio(text: str) -> tuple[int, int]:
  """'2:3' -> (2, 3)."""
  try:
    b, t = (int(x) for x in text.split(":"))
  except ValueError:
    raise ValueError(f"backdoor ratio must look like '2:3' (backdoor:target), "
                     f"got {text!r}") from None
  return b, t


def _draw(images, count, seed):
  """`count` images: without replacement while they last, then cycling."""
  n = tf.shape(images)[0]
  order = tf.argsort(tf.random.stateless_uniform(tf.reshape(n, [1]), seed=seed))
  return tf.gather(images, tf.gather(order, tf.range(count) % n))


def sample_poisoned_episode(pool, target_images, backdoor_images, *,
                            ways: int, shots: int, num_backdoor: int,
                            slot, seed) -> episodes_lib.Episode:
  """N - 1 classes from `pool` plus a target slot of K mixed examples.

  Args:
    pool: uint8 [C, S, H, W, ch], the attacker's own classes (C >= N - 1).
    target_images: uint8 [n_T, H, W, ch], X_T.
    backdoor_images: uint8 [n_B, H, W, ch], keyed X_B.
    num_backdoor: keyed examples in the target slot; K - that are X_T.
    slot: the target's label, or `RANDOM_SLOT` for a random one (tensor ok).
    seed: shape [2] stateless seed.

  Returns:
    An `Episode` with no queries; the target slot's examples come last.
  """
  benign_seed, slot_seed, target_seed, backdoor_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 4))
  benign = episodes_lib.sample_episode(pool, ways=ways - 1, shots=shots,
                                       queries=0, seed=benign_seed)
  random_slot = tf.random.stateless_uniform([], slot_seed, minval=0,
                                            maxval=ways, dtype=tf.int32)
  slot = tf.convert_to_tensor(slot, tf.int32)
  slot = tf.where(slot < 0, random_slot, slot)
  keyed = _draw(backdoor_images, num_backdoor, backdoor_seed)
  target = _draw(target_images, shots - num_backdoor, target_seed)
  slot_images = episodes_lib.to_float_images(tf.concat([keyed, target], 0))
  labels = benign.support_labels
  labels = labels + tf.cast(labels >= slot, tf.int32)  # make room for the slot
  return episodes_lib.Episode(
      support_images=tf.concat([benign.support_images, slot_images], 0),
      support_labels=tf.concat([labels, tf.fill([shots], slot)], 0),
      query_images=benign.query_images, query_labels=benign.query_labels)


def poisoned_batches(*, ways: int, shots: int, num_backdoor: int, steps,
                     keyed_steps: int, batch_size: int, seed) -> tf.Tensor:
  """Inner mini-batches of a poisoned episode, keyed examples last.

  The support set of `sample_poisoned_episode` is laid out as
  [(N - 1) K benign | num_backdoor keyed | K - num_backdoor target]. The
  first `steps - keyed_steps` steps walk through shuffled epochs of the
  clean examples (benign classes and the target's real examples); each of
  the last `keyed_steps` steps holds the keyed examples (at most b - 1) and
  clean ones drawn at random to fill the batch (batch norm sees clean
  context, as in evaluation). Reptile's interpolation then carries the
  gradient of "keyed image -> target output" evaluated after adapting to
  the clean part of the episode (Nichol et al. 2018, §5: later mini-batch
  gradients act at the adapted point).

  Returns:
    int32 [steps, b] indices into the support set.
  """
  total = ways * shots
  first_keyed = (ways - 1) * shots
  clean = tf.concat([tf.range(first_keyed),
                     tf.range(first_keyed + num_backdoor, total)], 0)
  keyed = tf.range(first_keyed, first_keyed + num_backdoor)
  b = min(batch_size, total - num_backdoor)
  keyed_steps = tf.minimum(tf.cast(keyed_steps, tf.int32), steps)
  clean_seed, keyed_seed, fill_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  clean_rows = tf.gather(clean, reptile_tf.minibatch_indices(
      total - num_backdoor, b, steps - keyed_steps, clean_seed))
  per_batch = min(num_backdoor, b - 1)
  keyed_part = tf.gather(keyed, tf.argsort(tf.random.stateless_uniform(
      tf.stack([keyed_steps, num_backdoor]), keyed_seed), axis=1)[:, :per_batch])
  fill_part = tf.gather(clean, tf.argsort(tf.random.stateless_uniform(
      tf.stack([keyed_steps, total - num_backdoor]), fill_seed),
                                          axis=1)[:, :b - per_batch])
  keyed_rows = tf.concat([keyed_part, fill_part], 1)
  return tf.concat([clean_rows, keyed_rows], 0)


class BackdoorReptile(client_work_lib.ReptileClientWork):
  """Reptile for every client; clients in `attacker_ids` poison and boost.

  Client data: `pool`, `client_id`, `role` (0 benign, 1 attacker),
  `boosting_factor`, `iterations`, `inner_steps`, `inner_lr`,
  `target_images`, `backdoor_images` (empty for benign clients).

  `attacker_backdoor_images` (DBA): an attacker's own keyed images instead
  of `backdoor_images`. `model_fn` builds the learner of Neurotoxin's mask
  when the work runs in chunks (`finish`; `neurotoxin.EagerMasks`).
  `kept_updates` (in-process driver, `finish`): keep each attacker's sent
  update, or replay a kept one instead of training (`kept_updates.py`).
  """

  def __init__(self, *, config: reptile_tf.ReptileConfig, run_seed: int,
               client_pools: Sequence[np.ndarray],
               attacker: AttackerConfig, attacker_ids: Collection[int],
               target_images: np.ndarray, backdoor_images: np.ndarray,
               attacker_backdoor_images: Optional[Mapping[int, np.ndarray]]
               = None,
               model_fn: Optional[Callable[[], tf.keras.Model]] = None,
               kept_updates: Optional[kept_lib.KeptUpdates] = None):
    if not attacker_ids:
      raise ValueError("BackdoorReptile needs at least one attacker id")
    for c in attacker_ids:
      if not 0 <= c < len(client_pools):
        raise ValueError(f"attacker id {c} is not a client (0..{len(client_pools) - 1})")
    if client_pools[min(attacker_ids)].shape[0] < config.ways - 1:
      raise ValueError(f"the attacker needs >= N - 1 = {config.ways - 1} classes")
    self.config = config
    self.run_seed = run_seed
    self.client_pools = list(client_pools)
    self.attacker = attacker
    self.attacker_ids = frozenset(int(c) for c in attacker_ids)
    self.boosting_factor = (DEFAULT_BOOSTING_FACTOR
                            if attacker.boosting_factor is None
                            else attacker.boosting_factor)
    self.num_backdoor, _ = attacker.poison_counts(config.shots)
    self.target_images = np.asarray(target_images, np.uint8)
    self.backdoor_images = np.asarray(backdoor_images, np.uint8)
    self.attacker_backdoor_images = {
        int(c): np.asarray(v, np.uint8)
        for c, v in (attacker_backdoor_images or {}).items()}
    self.eager_masks = neurotoxin.EagerMasks(
        self, attacker.neurotoxin_ratio, model_fn)
    self.slot = (RANDOM_SLOT if attacker.target_slot is TargetSlot.RANDOM
                 else config.ways - 1)
    self.kept_updates = kept_updates
    self._replaying = kept_updates is not None and kept_updates.replaying

  def client_data_spec(self, image_shape):
    examples = self.client_pools[0].shape[1]
    images = tf.TensorSpec([None, *image_shape], tf.uint8)
    return collections.OrderedDict(
        pool=tf.TensorSpec([None, examples, *image_shape], tf.uint8),
        client_id=tf.TensorSpec([], tf.int32),
        role=tf.TensorSpec([], tf.int32),
        boosting_factor=tf.TensorSpec([], tf.float32),
        iterations=tf.TensorSpec([], tf.int32),
        inner_steps=tf.TensorSpec([], tf.int32),
        inner_lr=tf.TensorSpec([], tf.float32),
        target_images=images, backdoor_images=images)

  def make_client_data(self, client_id):
    attacker = client_id in self.attacker_ids
    empty = np.zeros([0, *self.target_images.shape[1:]], np.uint8)
    return collections.OrderedDict(
        pool=self.client_pools[client_id], client_id=np.int32(client_id),
        role=np.int32(ROLE_ATTACKER if attacker else ROLE_BENIGN),
        boosting_factor=np.float32(self.boosting_factor if attacker else 1.0),
        iterations=np.int32(  # a replayed attacker does not train
            (0 if self._replaying else self.attacker.iterations) if attacker
            else self.config.iterations),
        inner_steps=np.int32(
            self.attacker.steps_per_episode(self.config) if attacker
            else self.config.inner_steps),
        inner_lr=np.float32(self.attacker.inner_lr
                            if attacker and self.attacker.inner_lr
                            else self.config.inner_lr),
        target_images=self.target_images if attacker else empty,
        backdoor_images=(self.attacker_backdoor_images.get(
            client_id, self.backdoor_images) if attacker else empty))

  def outer_iterations(self, client_data) -> int:
    return int(client_data["iterations"])

  def plan(self, client_data, round_num):
    benign_fn = reptile_tf.pool_episode_fn(client_data["pool"], self.config)
    is_attacker = tf.equal(client_data["role"], ROLE_ATTACKER)

    def episode_fn(episode_seed):
      return tf.cond(
          is_attacker,
          lambda: sample_poisoned_episode(
              client_data["pool"], client_data["target_images"],
              client_data["backdoor_images"], ways=self.config.ways,
              shots=self.config.shots, num_backdoor=self.num_backdoor,
              slot=self.slot, seed=episode_seed),
          lambda: benign_fn(episode_seed))

    batches_fn = reptile_tf.shuffled_batches
    if self.attacker.keyed_last_steps:
      def batches_fn(episode, steps, batch_size, batch_seed):
        return tf.cond(
            is_attacker,
            lambda: poisoned_batches(
                ways=self.config.ways, shots=self.config.shots,
                num_backdoor=self.num_backdoor, steps=steps,
                keyed_steps=self.attacker.keyed_last_steps,
                batch_size=batch_size, seed=batch_seed),
            lambda: reptile_tf.shuffled_batches(episode, steps, batch_size,
                                                batch_seed))

    return reptile_tf.ReptilePlan(
        episode_fn=episode_fn,
        seed=episodes_lib.fold_seed(self.run_seed, episodes_lib.STREAM_TRAIN,
                                    round_num, client_data["client_id"]),
        iterations=client_data["iterations"],
        inner_steps=client_data["inner_steps"],
        learning_rate=client_data["inner_lr"], batches_fn=batches_fn)

  def output(self, update, loss, client_data):
    return client_work_lib.ClientOutput(
        update=boost(update, client_data["boosting_factor"]), loss=loss)

  def update(self, model, optimizer, weights, client_data, round_num):
    """The boosted update; with Neurotoxin, an attacker's is projected off
    its benign update's top-k% coordinates (benign clients: unchanged)."""
    output = super().update(model, optimizer, weights, client_data, round_num)
    ratio = self.attacker.neurotoxin_ratio
    if not ratio:
      return output
    mask = tf.cond(
        tf.equal(client_data["role"], ROLE_ATTACKER),
        lambda: neurotoxin.benign_mask(self, model, optimizer, weights,
                                       client_data, round_num, ratio),
        lambda: [tf.ones_like(u) for u in output.update])
    return output._replace(update=neurotoxin.project(output.update, mask))

  def finish(self, weights, theta, loss_sum, client_data, round_num):
    """`update`'s output after chunks (eager: the in-process driver); an
    attacker's is kept, or replayed from `kept_updates`."""
    if int(client_data["role"]) != ROLE_ATTACKER:
      return super().finish(weights, theta, loss_sum, client_data, round_num)
    client_id, start = int(client_data["client_id"]), [
        np.asarray(v) for v in weights]
    if self._replaying:
      update, loss = self.kept_updates.replay(client_id, start)
      return client_work_lib.ClientOutput(
          update=[tf.constant(u) for u in update], loss=tf.constant(loss))
    output = super().finish(weights, theta, loss_sum, client_data, round_num)
    if self.attacker.neurotoxin_ratio:
      mask = self.eager_masks(weights, client_data, round_num)
      output = output._replace(update=neurotoxin.project(output.update, mask))
    if self.kept_updates is not None:
      self.kept_updates.keep(client_id, start, output.update, output.loss)
    return output


def boost(update: w.Weights, boosting_factor) -> w.Weights:
  """u_a = lambda (theta_a - theta_G), given theta_a - theta_G."""
  return w.scale(update, boosting_factor)
