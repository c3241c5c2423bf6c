"""Tests for fedmeta_tf.experiments.attack_schedule."""

import pytest

from fedmeta_tf.experiments import attack_schedule as s

FEDERATION = dict(num_clients=4, clients_per_round=3, min_updates=3)


def test_one_shot_round_has_the_attacker_and_two_benign_clients():
  schedule = s.AttackSchedule()
  for r in range(0, 12):
    clients = schedule.clients(seed=0, round_num=r, server_round=10 + r,
                               **FEDERATION)
    assert len(clients) == 3
    assert (0 in clients) == (r == 1)


def test_repeated_attacks_and_client_sampling_is_seeded():
  schedule = s.AttackSchedule(attack_rounds=(1, 3, 5))
  chosen = [schedule.clients(seed=1, round_num=r, server_round=r,
                             num_clients=8, clients_per_round=4,
                             min_updates=3) for r in range(1, 7)]
  assert [0 in c for c in chosen] == [True, False, True, False, True, False]
  assert chosen == [schedule.clients(seed=1, round_num=r, server_round=r,
                                     num_clients=8, clients_per_round=4,
                                     min_updates=3) for r in range(1, 7)]
  assert all(len(c) == 3 for c in chosen)


def test_boosting_factor_by_attack_kind():
  # Defaults: lambda = 3 for the boosted attack, gamma = M_min (here 4) for
  # model replacement; a requested factor wins for both; none: 1.
  assert s.boosting_factor(s.AttackKind.BOOSTED, None, min_updates=4) == 3.0
  assert s.boosting_factor(s.AttackKind.BOOSTED, 5.0, min_updates=4) == 5.0
  assert s.boosting_factor(s.AttackKind.MODEL_REPLACEMENT, None,
                           min_updates=4) == 4.0
  assert s.boosting_factor(s.AttackKind.MODEL_REPLACEMENT, 10.0,
                           min_updates=4) == 10.0
  assert s.boosting_factor(s.AttackKind.NONE, 5.0, min_updates=4) == 1.0


def test_invalid_schedules_are_clear_errors():
  with pytest.raises(ValueError, match="round 0 is the pre-trained"):
    s.AttackSchedule(attack_rounds=(0,))
  with pytest.raises(ValueError, match="is not a client"):
    s.AttackSchedule(attacker_ids=(7,)).check(**FEDERATION)
