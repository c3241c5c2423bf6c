"""Supervised federated learning with backdoor attackers (pruning paper, III).

`build_federation(config)` turns a config into everything a run and the
later pruning defense need (the task, the K-label split, the attackers'
poisoned data and boosting factors, the client work, the backdoor test set); it is a
pure function of the config, so `binaries/prune.py` rebuilds the same
federation from a run directory's `config.json`.

`experiments/fedavg.py` runs its FedAvg rounds (`round_clients` says who
reports in a round; `evaluate` scores the global model).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Optional

import numpy as np
import tensorflow as tf

from fedmeta_tf.data import registry
from fedmeta_tf.data import supervised_datasets
from fedmeta_tf.meta import server_tf
from fedmeta_tf.reporting import release
from fedmeta_tf.supervised import attacks
from fedmeta_tf.supervised import client_work as client_work_lib
from fedmeta_tf.supervised import data as data_lib
from fedmeta_tf.supervised import model as model_lib


# The paper's own datasets, then the class pools a 10-label task is built from.
DATASETS = ([d.value for d in supervised_datasets.SupervisedDataset]
            + [d.value for d in registry.DatasetName])


class Attack(enum.Enum):
  NONE = "none"
  PIXEL = "pixel"  # every attacker stamps the whole key
  DBA = "dba"  # the key's pixels split among the attackers


@dataclasses.dataclass(frozen=True)
class SupervisedConfig:
  """A supervised federated run (written to config.json next to results).

  The attackers are the first `num_attackers` clients (in client order)
  holding `source_label`; `boosting_factor` is the model-replacement factor alpha.
  """

  dataset: str = "glyphs"
  data_dir: Optional[str] = None
  seed: int = 0
  num_labels: int = 10
  train_copies: int = 40
  test_copies: int = 25
  num_clients: int = 10
  labels_per_client: int = 3
  clients_per_round: int = 10
  rounds: int = 30
  epochs: int = 2
  batch_size: int = 32
  learning_rate: float = 0.05
  filters: tuple = (16, 32, 64)
  hidden: tuple = (128,)
  head: str = "flatten"
  kernel_size: int = 3
  conv_padding: str = "same"
  attack: Attack = Attack.PIXEL
  num_attackers: int = 1
  source_label: int = 9
  target_label: int = 1
  boosting_factor: float = 3.0
  attack_start_round: int = 1
  poison_copies: int = 1
  key_size: int = 4
  key_position: str = "corner"
  key_pixels: int = 0
  val_size: int = 1000
  aggregator: str = "mean"
  runtime: str = "inprocess"

  def __post_init__(self):
    hidden = (self.hidden,) if isinstance(self.hidden, int) else self.hidden
    object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
    object.__setattr__(self, "filters", tuple(int(f) for f in self.filters))
    for name in ("num_labels", "train_copies", "test_copies", "num_clients",
                 "labels_per_client", "clients_per_round", "rounds", "epochs",
                 "batch_size", "poison_copies", "key_size", "kernel_size",
                 "val_size"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if self.dataset not in DATASETS:
      raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got "
                       f"{self.dataset!r}")
    if (is_image_dataset(self.dataset)
        and self.num_labels != supervised_datasets.NUM_CLASSES):
      raise ValueError(f"{self.dataset} has {supervised_datasets.NUM_CLASSES}"
                       f" labels, got num_labels={self.num_labels}")
    if self.clients_per_round > self.num_clients:
      raise ValueError(f"clients_per_round ({self.clients_per_round}) exceeds "
                       f"num_clients ({self.num_clients})")
    for name in ("source_label", "target_label"):
      if not 0 <= getattr(self, name) < self.num_labels:
        raise ValueError(f"{name} must be in [0, {self.num_labels}), got "
                         f"{getattr(self, name)}")
    if self.source_label == self.target_label:
      raise ValueError("source_label and target_label must differ")
    if self.attack is not Attack.NONE and self.num_attackers < 1:
      raise ValueError(f"num_attackers must be >= 1, got {self.num_attackers}")
    if self.attack_start_round < 1:
      raise ValueError(f"attack_start_round must be >= 1, got "
                       f"{self.attack_start_round}")
    if not self.boosting_factor >= 1:
      raise ValueError(f"boosting_factor (alpha) must be >= 1, got "
                       f"{self.boosting_factor}")
    if not self.filters or not self.hidden or min(self.filters + self.hidden
                                                  ) <= 0:
      raise ValueError(f"filters and hidden must be one or more positive "
                       f"ints, got {self.filters}, {self.hidden}")
    if self.conv_padding not in model_lib.PADDINGS:
      raise ValueError(f"conv_padding must be one of {model_lib.PADDINGS}, "
                       f"got {self.conv_padding!r}")
    if self.key_pixels and self.key_pixels not in attacks.COUNT_PATTERNS:
      raise ValueError(f"key_pixels must be 0 (a key_size checkerboard) or "
                       f"one of {sorted(attacks.COUNT_PATTERNS)} (Fig. 1), "
                       f"got {self.key_pixels}")
    if self.head not in model_lib.HEADS:
      raise ValueError(f"head must be one of {model_lib.HEADS}, got "
                       f"{self.head!r}")
    if self.runtime not in ("tff", "inprocess"):
      raise ValueError(f"runtime must be tff or inprocess, got {self.runtime}")

  def to_json(self) -> dict:
    d = dataclasses.asdict(self)
    d["attack"] = self.attack.value
    d["filters"] = list(self.filters)
    d["hidden"] = list(self.hidden)
    return d

  @classmethod
  def from_json(cls, d: dict) -> "SupervisedConfig":
    d = dict(d)
    d["attack"] = Attack(d["attack"])
    d.setdefault("head", "flatten")
    d.setdefault("key_position", "corner")
    d.setdefault("attack_start_round", 1)
    return cls(**d)


@dataclasses.dataclass
class Federation:
  """Everything rebuilt from a config: data, clients, attackers, key."""

  config: SupervisedConfig
  data: data_lib.SupervisedData
  client_datasets: list  # what each client trains on (attackers: poisoned)
  clean_datasets: list  # each client's own clean data (for pruning ranks)
  client_labels: np.ndarray
  attackers: list
  key_pixels: np.ndarray
  x_backdoor: np.ndarray  # keyed test images; success = predicted target

  def model_fn(self):
    c = self.config
    return model_lib.build_supervised_cnn(
        self.data.image_shape, self.data.num_labels, filters=c.filters,
        hidden=c.hidden, head=c.head, kernel_size=c.kernel_size,
        padding=c.conv_padding, seed=c.seed)

  def client_work(self, *, after_training: bool = False
                  ) -> client_work_lib.SupervisedFedAvg:
    """The clients' work; `after_training`: for rounds that follow the
    training (fine-tuning), where the attackers attack from the first one
    whatever `attack_start_round` is (the runner counts rounds from 0)."""
    c = self.config
    start = 0 if after_training else c.attack_start_round - 1
    boosting_factors = [c.boosting_factor if i in self.attackers else 1.0
                        for i in range(c.num_clients)]
    return client_work_lib.SupervisedFedAvg(
        client_datasets=self.client_datasets,
        boosting_factors=boosting_factors,
        learning_rate=c.learning_rate, epochs=c.epochs,
        batch_size=c.batch_size, run_seed=c.seed,
        clean_sizes=[len(x) for x, _ in self.clean_datasets],
        attack_from=[start if i in self.attackers else 0
                     for i in range(c.num_clients)])


def is_image_dataset(dataset: str) -> bool:
  """MNIST, Fashion-MNIST or CIFAR-10 (the paper's own data), as opposed to
  a few-shot class pool turned into a 10-label task."""
  return dataset in {d.value for d in supervised_datasets.SupervisedDataset}


def load_task(config: SupervisedConfig
              ) -> tuple[data_lib.SupervisedData, str]:
  """The config's task and one line saying what was read."""
  if is_image_dataset(config.dataset):
    split, line = supervised_datasets.load_supervised_task(
        config.dataset, config.data_dir, seed=config.seed,
        val_size=config.val_size)
    arrays = {f.name: getattr(split, f.name)
              for f in dataclasses.fields(split)}
    return data_lib.SupervisedData(
        **arrays, num_labels=supervised_datasets.NUM_CLASSES), line
  pool = registry.load_dataset(config.dataset, config.data_dir,
                               seed=config.seed)
  data = data_lib.augmented_class_task(
      pool, num_labels=config.num_labels, train_copies=config.train_copies,
      test_copies=config.test_copies, seed=config.seed)
  return data, (f"{config.dataset}: {config.num_labels} characters as labels,"
                f" {len(data.x_train)} training / {len(data.x_val)} "
                f"validation / {len(data.x_test)} test images (augmented)")


def build_federation(config: SupervisedConfig,
                     data: Optional[data_lib.SupervisedData] = None
                     ) -> Federation:
  """The federation of `config` (`data` overrides the config's dataset)."""
  data = load_task(config)[0] if data is None else data
  if config.num_labels != data.num_labels:
    raise ValueError(f"config.num_labels {config.num_labels} != the task's "
                     f"{data.num_labels}")
  indices, client_labels = data_lib.label_skew_partition(
      data.y_train, num_clients=config.num_clients,
      labels_per_client=config.labels_per_client,
      num_labels=data.num_labels, seed=config.seed)
  clean = [(data.x_train[i], data.y_train[i]) for i in indices]
  key = attacks.PixelPattern(size=config.key_size,
                             position=config.key_position,
                             count=config.key_pixels)
  full_key = key.pixels(data.image_shape)
  attackers = []
  if config.attack is not Attack.NONE:
    holders = [i for i in range(config.num_clients)
               if config.source_label in client_labels[i]]
    if len(holders) < config.num_attackers:
      raise ValueError(f"only {len(holders)} clients hold source label "
                       f"{config.source_label}; num_attackers is "
                       f"{config.num_attackers}")
    attackers = holders[:config.num_attackers]
  datasets = list(clean)
  for rank, client in enumerate(attackers):
    pixels = (key.part(data.image_shape, rank, len(attackers))
              if config.attack is Attack.DBA else full_key)
    datasets[client] = attacks.poison(
        *clean[client], pixels=pixels, source_label=config.source_label,
        target_label=config.target_label, copies=config.poison_copies)
  x_backdoor = attacks.backdoor_test_set(
      data.x_test, data.y_test, pixels=full_key,
      source_label=config.source_label, target_label=config.target_label)
  return Federation(config=config, data=data, client_datasets=datasets,
                    clean_datasets=clean, client_labels=client_labels,
                    attackers=attackers, key_pixels=full_key,
                    x_backdoor=x_backdoor)


def predict(model: tf.keras.Model, x: np.ndarray, batch: int = 1000
            ) -> np.ndarray:
  """Predicted labels of uint8 images."""
  out = [np.argmax(model(client_work_lib.images_to_float(x[i:i + batch]),
                         training=False), axis=-1)
         for i in range(0, len(x), batch)]
  return np.concatenate(out) if out else np.zeros([0], np.int64)


def evaluate(model: tf.keras.Model, federation: Federation) -> dict:
  """Test accuracy, validation accuracy and attack success of `model`."""
  d = federation.data
  return {
      "test_accuracy": float(np.mean(predict(model, d.x_test) == d.y_test)),
      "val_accuracy": float(np.mean(predict(model, d.x_val) == d.y_val)),
      "attack_success": float(np.mean(
          predict(model, federation.x_backdoor)
          == federation.config.target_label)),
  }


def round_clients(config: SupervisedConfig, round_num: int) -> list[int]:
  if config.clients_per_round == config.num_clients:
    return list(range(config.num_clients))
  return server_tf.select_clients(
      seed=config.seed, round_num=round_num, num_clients=config.num_clients,
      clients_per_round=config.clients_per_round,
      min_updates=config.clients_per_round)


# A run's global model (`weights.npz`), written via a rename.
save_weights = release.save_weights_atomically
load_weights = release.load_weights
