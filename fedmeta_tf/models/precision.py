"""`--precision`: float32, or Keras mixed precision in bfloat16 (issue #20).

Under `mixed_bfloat16` (Keras' own policy, `tf.keras.mixed_precision`) the
convolutions, the batch norm and the ReLU / pooling between them compute in
bfloat16 while every variable stays float32, so what federated Reptile
averages, the Reptile interpolation theta + eps (theta_W - theta) (main
paper, Algorithm 1) and every checkpoint are float32 whatever the
precision. Three parts always compute in float32 (`models/conv4.py`,
`models/matching.py`): the batch statistics (TensorFlow's fused batch norm
accumulates them in float32 from bfloat16 input, with float32 gamma and
beta), the logits, and the metric heads of the local defense; the loss is
therefore float32 too. bfloat16 has float32's exponent, so no loss scaling
is needed.

bfloat16 only pays where the hardware computes it: CPUs with AVX512-BF16 or
AMX (Intel Sapphire Rapids and later, AMD Zen 4 and later) and GPUs of
compute capability 8.0 or more. Elsewhere TensorFlow emulates it and a step
is several times slower (a glyphs round on a 2-core AMD EPYC without
these instructions: 5x; docs/results/performance.md has both kinds of CPU), so `why_slower` names the missing hardware and the
binaries say so in one line before running.
"""

from __future__ import annotations

import contextlib
import enum
from typing import Iterator, Optional

import tensorflow as tf

from fedmeta_tf import enums

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names
MIN_GPU_CAPABILITY = (8, 0)  # Ampere: bfloat16 tensor cores


class Precision(enum.Enum):
  FLOAT32 = "float32"
  MIXED_BFLOAT16 = "mixed_bfloat16"


def parse_precision(value) -> Precision:
  return enums.parse_enum(Precision, value, "precision")


def cpu_flags(cpuinfo_path: str = "/proc/cpuinfo") -> frozenset:
  """The instruction-set flags of the first CPU in `cpuinfo_path`; empty
  where the file is missing (not Linux)."""
  try:
    with open(cpuinfo_path, encoding="utf-8") as f:
      for line in f:
        if line.startswith("flags"):
          return frozenset(line.split(":", 1)[1].split())
  except OSError:
    pass
  return frozenset()


def gpu_capabilities() -> list:
  """(major, minor) compute capability of each visible GPU."""
  found = []
  for gpu in tf.config.list_physical_devices("GPU"):
    details = tf.config.experimental.get_device_details(gpu)
    found.append(tuple(details.get("compute_capability", (0, 0))))
  return found


def why_slower(precision: Precision, *, cpu: frozenset,
               gpus: list) -> Optional[str]:
  """Why `precision` would run slower than float32 on this hardware (one
  line), or None when it should not. The device that runs the model is the
  first GPU when there is one, else the CPU."""
  if precision is Precision.FLOAT32:
    return None
  if gpus:
    if tuple(gpus[0]) >= MIN_GPU_CAPABILITY:
      return None
    return (f"the GPU (compute capability {gpus[0][0]}.{gpus[0][1]}) has no "
            f"bfloat16 units (8.0 or later has)")
  if cpu & set(CPU_BF16_FLAGS):
    return None
  return (f"this CPU has neither {' nor '.join(CPU_BF16_FLAGS)} and no GPU is "
          f"visible: TensorFlow emulates bfloat16 here")


def why_slower_here(precision: Precision | str) -> Optional[str]:
  """`why_slower` for this machine's CPU flags and visible GPUs."""
  return why_slower(parse_precision(precision), cpu=cpu_flags(),
                    gpus=gpu_capabilities())


@contextlib.contextmanager
def policy(precision: Precision | str) -> Iterator[Precision]:
  """Keras' global dtype policy is `precision` inside, and is restored on
  exit (a binary's main() run twice in one process, as the tests do, does
  not leak bfloat16 into the next run). Models must be built inside."""
  precision = parse_precision(precision)
  previous = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy(precision.value)
  try:
    yield precision
  finally:
    tf.keras.mixed_precision.set_global_policy(previous)
