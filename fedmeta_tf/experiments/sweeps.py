"""A sweep: one supervised run per label pair and key pattern (the rows of
the pruning paper's Tables I-VI), in one directory.

    <sweep>/sweep.json          the members: name, victim, target, key_pixels
    <sweep>/<member>/...        a `fedavg.run_supervised` run each

`binaries.train_supervised --label_pairs=9:0,9:1 --key_pixels=1,3` trains
the members one after another (each resumes on its own, so a killed sweep
re-run continues where it stopped); `binaries.prune --from=<sweep>` defends
every member and writes the table with the paper's figures beside ours.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from typing import Optional, Sequence

from fedmeta_tf.reporting import release
from fedmeta_tf.supervised import data as data_lib
from fedmeta_tf.supervised import training

SWEEP_JSON = "sweep.json"


@dataclasses.dataclass(frozen=True)
class Member:
  """One run of a sweep: its directory name and what it varies."""

  name: str
  source_label: int
  target_label: int
  key_pixels: int

  def key(self, kind: str):
    """The row key of a paper table (`paper_tables.PaperTable.key_kind`)."""
    if kind == "pixels":
      return self.key_pixels
    return (self.source_label, self.target_label)

  def label(self) -> str:
    return self.name.replace("_", " ")


def parse_label_pairs(values: Sequence[str]) -> list[tuple[int, int]]:
  """["9:0", "9:1"] -> [(9, 0), (9, 1)] (victim:target)."""
  pairs = []
  for value in values:
    parts = value.split(":")
    try:
      pair = (int(parts[0]), int(parts[1]))
      if len(parts) != 2:
        raise ValueError
    except (ValueError, IndexError):
      raise ValueError(f"--label_pairs: {value!r} is not victim:target "
                       "(e.g. 9:1)") from None
    pairs.append(pair)
  if len(set(pairs)) != len(pairs):
    raise ValueError(f"--label_pairs lists a pair twice: {list(values)}")
  return pairs


def members(config: training.SupervisedConfig,
            label_pairs: Sequence[tuple[int, int]] = (),
            key_pixels: Sequence[int] = ()) -> list[Member]:
  """The product of the label pairs and key patterns; empty lists mean the
  config's own pair / pattern. Names say what varies: `vic9_atk1`,
  `pixels3`, `vic9_atk1_pixels3`."""
  pairs = list(label_pairs) or [(config.source_label, config.target_label)]
  patterns = list(key_pixels) or [config.key_pixels]
  if len(set(patterns)) != len(patterns):
    raise ValueError(f"--key_pixels lists a pattern twice: {patterns}")
  out = []
  for (victim, target), pixels in itertools.product(pairs, patterns):
    parts = []
    if label_pairs:
      parts.append(f"vic{victim}_atk{target}")
    if key_pixels:
      parts.append(f"pixels{pixels}")
    out.append(Member("_".join(parts), victim, target, pixels))
  return out


def member_config(config: training.SupervisedConfig, member: Member
                  ) -> training.SupervisedConfig:
  """The config of one member (ValueError when the pair is invalid)."""
  return dataclasses.replace(config, source_label=member.source_label,
                             target_label=member.target_label,
                             key_pixels=member.key_pixels)


def write_sweep(output_dir: str, config: training.SupervisedConfig,
                sweep: Sequence[Member]) -> None:
  release.write_json_atomically(os.path.join(output_dir, SWEEP_JSON), {
      "config": config.to_json(),
      "members": [dataclasses.asdict(m) for m in sweep]})


def read_sweep(run_dir: str) -> Optional[list[Member]]:
  """The members of the sweep in `run_dir`; None if it is a single run."""
  path = os.path.join(run_dir, SWEEP_JSON)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return [Member(**m) for m in json.load(f)["members"]]


def run_sweep(config: training.SupervisedConfig, sweep: Sequence[Member],
              output_dir: str, data: data_lib.SupervisedData) -> list[dict]:
  """Trains every member in `output_dir/<name>` (resuming each); returns
  their summaries."""
  from fedmeta_tf.experiments import fedavg  # pylint: disable=g-import-not-at-top
  configs = [member_config(config, m) for m in sweep]  # all valid first
  write_sweep(output_dir, config, sweep)
  summaries = []
  for member, member_cfg in zip(sweep, configs):
    summary = fedavg.run_supervised(member_cfg,
                                    os.path.join(output_dir, member.name),
                                    data=data)
    summaries.append({"member": member.name, **summary})
  return summaries
