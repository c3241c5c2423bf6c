"""Flags shared by the binaries that start from an Experiment 1 run.

`binaries.finetune` (Experiment 2) and `binaries.defend` (Experiment 3) read
the same run directory, the same cases, benign clients and checkpoint, and
resume the same way; their flags are defined once, here. Importing this
module from both binaries defines them once per process.
"""

from __future__ import annotations

from typing import Optional

from absl import flags

from binaries import common

FROM = common.define_from_flag("Experiment 1 run directory.")
EPISODES = flags.DEFINE_integer("episodes", 40,
                                "Episodes per client (papers: 40 or 50).")
CASES = flags.DEFINE_list(
    "cases", None, "Cases to run (a from an (a) run; b, c from a (b)/(c) "
    "run); default: the run's case, plus (c) for a (b) run.")
CLIENTS = flags.DEFINE_list("clients", None,
                            "Benign clients to run (default: all).")
CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "attacked", "pretrained | attacked | final.",
    allow_override=True)  # binaries.prune has its own default
OVERWRITE = flags.DEFINE_boolean(
    "overwrite", False, "Discard finished units of an earlier run with the "
    "same settings and start over (default: resume, skipping them).",
    allow_override=True)


def run_dir() -> str:
  """--from, checked to be given."""
  if not FROM.value:
    raise ValueError("--from=<Experiment 1 run directory> is required")
  return FROM.value


def clients() -> Optional[list[int]]:
  """--clients as integers (None: every benign client)."""
  if CLIENTS.value is None:
    return None
  try:
    return [int(c) for c in CLIENTS.value]
  except ValueError:
    raise ValueError(f"--clients must be integers, got {CLIENTS.value}") from None
