"""The federation's attack schedule: attackers poison and boost from
attack_start_round on (and from the first fine-tuning round)."""

import numpy as np
import pytest

from fedmeta_tf.supervised import data as data_lib
from fedmeta_tf.supervised import training


def _data():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 255, [200, 12, 12]).astype(np.uint8)
  y = np.arange(200) % 4
  return data_lib.SupervisedData.from_arrays(x, y, x, y, val_size=20)


def test_attackers_start_at_attack_start_round():
  config = training.SupervisedConfig(
      num_labels=4, num_clients=4, labels_per_client=2, clients_per_round=4,
      source_label=3, target_label=0, key_size=2, attack_start_round=5)
  federation = training.build_federation(config, _data())
  (attacker,) = federation.attackers
  work = federation.client_work()
  clean_x, _ = federation.clean_datasets[attacker]
  poisoned_x, _ = federation.client_datasets[attacker]
  assert len(poisoned_x) > len(clean_x)
  assert work.clean_sizes[attacker] == len(clean_x)
  assert work.attack_from[attacker] == 4  # round 5 is round_num 4
  assert [work.attack_from[i] for i in range(4) if i != attacker] == [0] * 3
  assert work.boosting_factors[attacker] == config.boosting_factor
  assert federation.client_work(after_training=True).attack_from == [0] * 4
  data = work.make_client_data(attacker)
  assert int(data["num_clean"]) == len(clean_x)
  assert int(data["attack_from"]) == 4


def test_attack_start_round_default_and_validation():
  d = training.SupervisedConfig().to_json()
  del d["attack_start_round"]  # config.json of an older run
  assert training.SupervisedConfig.from_json(d).attack_start_round == 1
  with pytest.raises(ValueError, match="attack_start_round"):
    training.SupervisedConfig(attack_start_round=0)
