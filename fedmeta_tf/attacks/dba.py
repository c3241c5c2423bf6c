"""DBA: a global key split among several attackers.

Xie et al., ICLR 2020, "DBA: Distributed Backdoor Attacks against Federated
Learning", Section 2.2 and Fig. 1: the global trigger is decomposed into
local patterns; each of the attackers poisons its training data with its
own local pattern only, trains and sends its (scaled) update as a
centralized attacker would, and the backdoor is tested with the global
trigger, the union of the local patterns.

Here: the stamp key splits into P = `StampKey.parts` row bands
(`keys.local_rows`: a 4x4 square in 4 parts gives DBA's four stripes);
attacker i (its position in `attacker_ids`) trains on the attack-training
images keyed with local pattern i mod P (`BackdoorData.attack_train_parts`)
and boosts as the boosted attack does; every backdoor metric keeps the
global key (`attack_train`, `attack_val`). What differs from the paper: the
attackers poison Reptile episodes (main paper, Section 2.2) rather than
supervised batches, all of them in the same attack round(s) (the paper
also studies attackers spread over rounds), and the local patterns are
bands of one stamp rather than separate stripes with gaps between them.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from fedmeta_tf.attacks import backdoor_data as bd


def check_attackers(parts: int, attacker_ids: Sequence[int]) -> None:
  """ValueError (one line) unless every local pattern has an attacker."""
  if parts > 1 and len(set(attacker_ids)) < parts:
    raise ValueError(
        f"DBA with {parts} local patterns needs at least {parts} attackers, "
        f"got {len(set(attacker_ids))} (attacker ids "
        f"{','.join(map(str, attacker_ids))}); list at least {parts} clients "
        "in --attacker_ids, or lower --dba_parts")


def attacker_images(data: bd.BackdoorData, attacker_ids: Sequence[int]
                    ) -> Optional[dict[int, np.ndarray]]:
  """{attacker id: its keyed images}: local pattern i mod P for the i-th
  attacker; None without DBA (every attacker has `attack_train`)."""
  parts = data.attack_train_parts
  if parts is None:
    return None
  return {int(c): parts[i % len(parts)] for i, c in enumerate(attacker_ids)}
