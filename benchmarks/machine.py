"""The machine a benchmark ran on, printed above its figures.

CPU model, cores (online, and usable by this process), memory, the load
average when the benchmark started (figures taken on a loaded machine are
not comparable with an idle one's), TensorFlow's version and the GPUs it
sees.
"""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def usable_cores() -> int:
  """Cores this process may run on (what `--parallelism` divides)."""
  from fedmeta_tf import parallel  # pylint: disable=g-import-not-at-top
  return parallel.available_cores()


def memory_gib() -> float:
  try:
    return (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) / 2**30
  except (ValueError, OSError, AttributeError):
    return float("nan")


def describe(with_tensorflow: bool = True) -> str:
  """One line describing this machine (and TensorFlow's devices)."""
  load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
  text = (f"machine: {cpu_model()}; {os.cpu_count()} cores online, "
          f"{usable_cores()} usable; {memory_gib():.1f} GiB RAM; "
          f"load average {load}")
  if with_tensorflow:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    gpus = tf.config.list_physical_devices("GPU")
    text += (f"; TensorFlow {tf.__version__}, "
             f"{len(gpus)} GPU(s) visible{': ' + str(gpus) if gpus else ''}")
  return text


def print_machine(with_tensorflow: bool = True) -> None:
  print(describe(with_tensorflow), flush=True)


def peak_kib(pid: int) -> int:
  """The kernel's peak-RSS high-water mark of a process (KiB)."""
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1])
  raise RuntimeError(f"no VmHWM for process {pid}")
