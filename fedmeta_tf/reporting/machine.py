"""The machine and code a run or a benchmark ran on.

CPU model, cores (online, and usable by this process), memory, the load
average at the start (figures taken on a loaded machine are not comparable
with an idle one's), TensorFlow's version and the GPUs it sees; and the git
commit of the code. Benchmarks print `describe()` above their figures; every
run directory keeps it in `run_info.json` (`run_info`), which
`binaries.report` puts beside the run's numbers.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from typing import Optional, Sequence


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


def git_commit() -> Optional[str]:
  """The commit of the fedmeta_tf checkout ('+' when it has local changes);
  None outside a git checkout."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  try:
    head = subprocess.run(["git", "-C", root, "rev-parse", "--short=12",
                           "HEAD"], capture_output=True, text=True, timeout=10,
                          check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain",
                            "--untracked-files=no"], capture_output=True,
                           text=True, timeout=10, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return head + ("+" if dirty else "")


def command_line(argv: Sequence[str]) -> str:
  """argv as the shell command that re-runs it (`python -m binaries.X ...`)."""
  program = os.path.abspath(argv[0])
  package_dir = os.path.basename(os.path.dirname(program))
  module = os.path.basename(program).removesuffix(".py")
  head = (f"python -m {package_dir}.{module}" if package_dir == "binaries"
          else f"python {argv[0]}")
  return " ".join([head] + [shlex.quote(a) for a in argv[1:]])


def run_info(argv: Optional[Sequence[str]] = None) -> dict:
  """What `run_info.json` records: the command, the machine, the commit and
  the start time (UTC)."""
  return {"command": command_line(argv if argv is not None else sys.argv),
          "machine": describe(with_tensorflow="tensorflow" in sys.modules),
          "commit": git_commit(),
          "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
