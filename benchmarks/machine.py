"""The machine a benchmark ran on, printed above its figures.

The description is `fedmeta_tf.reporting.machine.describe` (the one every
run directory records in run_info.json); `peak_kib` reads a process's peak
memory for the memory benchmark.
"""

from __future__ import annotations

from fedmeta_tf.reporting.machine import cpu_model, describe, usable_cores  # pylint: disable=unused-import


def print_machine(with_tensorflow: bool = True) -> None:
  print(describe(with_tensorflow), flush=True)


def peak_kib(pid: int) -> int:
  """The kernel's peak-RSS high-water mark of a process (KiB)."""
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1])
  raise RuntimeError(f"no VmHWM for process {pid}")
