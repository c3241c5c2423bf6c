"""When the attacker takes part, and how its update is scaled (Section 3).

Rounds are counted from the pre-trained model (round 0): in the papers'
one-shot setting the attacker is selected exactly once, in round 1, together
with M_min - 1 benign clients (M = 4, M_r = M_min = 3), and every other round
samples benign clients only (benign pre-training before, benign meta-training
after). `attack_rounds` with several entries gives repeated attacks.

Server-side defenses (issue 5, Experiment 3e) reuse this schedule: it only
says which clients report in a round; the aggregation is theirs.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Optional

from fedmeta_tf.attacks import backdoor_reptile
from fedmeta_tf.meta import server_tf


class AttackKind(enum.Enum):
  NONE = "none"
  BOOSTED = "boosted"  # u_a = lambda (theta_a - theta_G), main paper §2.2
  MODEL_REPLACEMENT = "model_replacement"  # gamma = M_min, pruning paper §III.D


def boosting_factor(kind: AttackKind, requested: Optional[float], *,
                    min_updates: int) -> float:
  """The factor the attacker multiplies theta_a - theta_G by.

  `requested` (`--boosting_factor`) wins when given. Otherwise: the boosted
  attack's lambda = 3 (main paper, Section 3.3); model replacement's
  gamma = M_min (Bagdasaryan et al., the pruning paper's Eq. 1): with
  theta_G <- theta_G + mean(u_i) over M_min updates, it makes the new global
  model theta_a plus the benign updates' share.
  """
  if kind is AttackKind.NONE:
    return 1.0
  if requested is not None:
    return float(requested)
  if kind is AttackKind.BOOSTED:
    return backdoor_reptile.DEFAULT_BOOSTING_FACTOR
  return float(min_updates)


@dataclasses.dataclass(frozen=True)
class AttackSchedule:
  """Which rounds (counted from the pre-trained model) include the attacker.

  Attributes:
    attack_rounds: rounds with the attackers (>= 1); empty: no attack.
    attacker_ids: the malicious clients (the papers: client 1 of 4, here 0).
  """

  attack_rounds: tuple[int, ...] = (1,)
  attacker_ids: tuple[int, ...] = (0,)

  def __post_init__(self):
    if any(r < 1 for r in self.attack_rounds):
      raise ValueError(f"attack rounds must be >= 1 (round 0 is the "
                       f"pre-trained model), got {self.attack_rounds}")
    if not self.attacker_ids:
      raise ValueError("attacker_ids must name at least one client")

  def is_attack_round(self, round_num: int) -> bool:
    return round_num in self.attack_rounds

  def check(self, *, num_clients: int, clients_per_round: int,
            min_updates: int) -> None:
    """Raises ValueError when the schedule cannot run in this federation."""
    for c in self.attacker_ids:
      if not 0 <= c < num_clients:
        raise ValueError(f"attacker id {c} is not a client (0..{num_clients - 1})")
    benign = num_clients - len(set(self.attacker_ids))
    if benign < 1:
      raise ValueError("the federation needs at least one benign client")
    if self.attack_rounds and len(self.attacker_ids) > min_updates:
      raise ValueError(f"{len(self.attacker_ids)} attackers exceed M_min = "
                       f"{min_updates}")
    del clients_per_round

  def clients(self, *, seed: int, round_num: int, server_round: int,
              num_clients: int, clients_per_round: int,
              min_updates: int) -> list[int]:
    """The clients whose updates are aggregated in `round_num`.

    Benign clients are sampled with `server_tf.select_clients` (seeded by
    the absolute `server_round`); in an attack round the attackers take
    len(attacker_ids) of the M_r and M_min places.
    """
    attackers = sorted(set(self.attacker_ids))
    benign = [c for c in range(num_clients) if c not in attackers]
    if self.is_attack_round(round_num):
      m_min = min_updates - len(attackers)
      m_r = max(m_min, clients_per_round - len(attackers))
      fixed = attackers
    else:
      m_min, m_r, fixed = min_updates, clients_per_round, []
    m_r, m_min = min(m_r, len(benign)), min(m_min, len(benign))
    chosen = []
    if m_min > 0:
      chosen = server_tf.select_clients(
          seed=seed, round_num=server_round, num_clients=len(benign),
          clients_per_round=m_r, min_updates=m_min)
    return sorted(fixed + [benign[i] for i in chosen])
