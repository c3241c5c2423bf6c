"""Helpers shared by the absl binaries: error reporting and run directories."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import sys
import time
from typing import Optional

from absl import flags

from fedmeta_tf.data.class_pool import DataError

EXIT_USAGE = 2


def define_from_flag(help_text: str):
  """`--from=<run dir>`, shared by the binaries that start from a run.

  Defined with `allow_override` so that several of these binaries can be
  imported into one process (the test suite) without a DuplicateFlagError,
  and registered under the calling module, so that the run's flags.json
  (`flag_values` of that module) records it.
  """
  caller = sys._getframe(1).f_globals["__name__"]  # pylint: disable=protected-access
  return flags.DEFINE_string("from", None, help_text, allow_override=True,
                             module_name=caller)


def parse_flags(argv):
  """absl flags parser for `app.run(main, flags_parser=parse_flags)`.

  An unknown or misspelled flag (on the command line or in a flagfile) or a
  bad value gives one line naming it, and exit status 2, instead of absl's
  usage dump.
  """
  global _command_line_flagfiles
  _command_line_flagfiles = _flagfiles(argv[1:])
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    program = os.path.basename(argv[0]).removesuffix(".py")
    print(f"{program}: error: {e}; see --helpfull", file=sys.stderr)
    sys.exit(EXIT_USAGE)


# The --flagfile values of the command line `parse_flags` parsed.
_command_line_flagfiles = []


def _flagfiles(argv) -> list[str]:
  """The --flagfile=F / --flagfile F values in argv (not nested ones)."""
  found = []
  for i, arg in enumerate(argv):
    for prefix in ("--flagfile", "-flagfile"):
      if arg.startswith(prefix + "="):
        found.append(arg[len(prefix) + 1:])
      elif arg == prefix and i + 1 < len(argv):
        found.append(argv[i + 1])
  return found


def resolve_experiment_name(name_flag, fallback: str) -> str:
  """Sets an unset --experiment_name (`name_flag`) to its default and
  returns it: the name of the last --flagfile on the command line without
  its extension (configs/omniglot_cpu.cfg: omniglot_cpu), else `fallback`.
  Set on the flag, so that flags.txt re-runs into the same directory."""
  if not name_flag.value:
    name = fallback
    if _command_line_flagfiles:
      name = os.path.splitext(os.path.basename(_command_line_flagfiles[-1]))[0]
    setattr(flags.FLAGS, name_flag.name, name)
  return name_flag.value


def user_errors_exit_2(main):
  """Turns ValueError/DataError into one line on stderr and exit status 2.

  Also releases the run-directory locks `main` took (`lock_run_dir`) when
  it returns or raises: a binary exits then anyway, and a process that calls
  several mains (the test suite) can run again in the same directory.
  """

  @functools.wraps(main)
  def wrapped(argv):
    held_before = len(_held_locks)
    try:
      return main(argv)
    except (ValueError, DataError) as e:
      program = os.path.basename(sys.argv[0]).removesuffix(".py")
      print(f"{program}: error: {e}", file=sys.stderr)
      sys.exit(EXIT_USAGE)
    finally:
      for lock in _held_locks[held_before:]:
        lock.release()

  return wrapped


def set_by_user(name: str) -> bool:
  """Whether --`name` was set (on the command line, in a --flagfile, or
  assigned in code) to a value other than its default.

  A flag set to its default value is not counted: it asks for nothing the
  run would not do anyway, and one flagfile can then serve several settings
  (configs/glyphs_defend_ablations_cpu.cfg sets --head_only_steps=5 and is
  documented with --defense=supervised as well).
  """
  flag = flags.FLAGS[name]
  return not flag.using_default_value and flag.value != flag.default


def refuse_if_set(name: str, setting: str, why: str) -> None:
  """Refuses --`name` where it would have no effect: raises ValueError (one
  line; exit status 2 through `user_errors_exit_2`) when the user set it
  (`set_by_user`). `setting` names what makes it ineffective
  ("--defense=supervised"); `why` says why and what would be valid."""
  if set_by_user(name):
    raise ValueError(f"{flags.FLAGS[name].serialize()} has no effect with "
                     f"{setting}: {why}")


# Flags that do not change what a run computes.
NON_EXPERIMENT_FLAGS = frozenset({"overwrite", "tff_workers",
                                  "parallelism", "progress", "client_chunk"})


def define_parallelism_flag(default: int = 0, note: str = ""):
  """`--parallelism=N`: in-process work items (clients, evaluation episodes)
  run at once. Streams give the sequential results computed with the same
  intra-op thread count (tests/runtime/parallel_test.py); the thread count
  itself (cores/N) changes float rounding in oneDNN's convolutions, which
  many rounds can grow into visible differences (supervised acceptance run,
  seed 0: test accuracy 0.8830 with 1 stream and 2 threads, 0.8870 with 2
  streams or with 1 stream and TF_NUM_INTRAOP_THREADS=1). Not an experiment
  setting: a run may resume with another value."""
  return flags.DEFINE_integer(
      "parallelism", default,
      "Clients trained, and evaluation episodes fine-tuned, at once in this "
      "process (each on its own model replica, with cores/N intra-op "
      "threads); 0: automatic (1 on a GPU, else min(cores, clients per "
      "round or episodes per evaluation)). The TFF runtime's C++ worker runs "
      "clients concurrently by itself." + note, lower_bound=0,
      allow_override=True)


def configure_parallelism(value: int, typical_items: int) -> int:
  """Applies --parallelism; call before TensorFlow runs its first op."""
  from fedmeta_tf import parallel  # pylint: disable=g-import-not-at-top
  return parallel.configure(value, typical_items)


def define_tff_workers_flag():
  """`--tff_workers=host:port,...`: run the TFF rounds on these TFF workers.

  Where the rounds run does not change what they compute (the same secure-sum
  compilation; tests/tff_process/remote_test.py), so a run may resume with
  other workers. Defined with `allow_override` like `define_from_flag`.
  """
  return flags.DEFINE_string(
      "tff_workers", None,
      "Comma-separated host:port of TFF workers (`python -m "
      "binaries.tff_worker --port=PORT` on each host) that run the rounds, "
      "clients split across them; unset: one local worker. Needs "
      "--runtime=tff.", allow_override=True)


def tff_workers_from_flag(value, runtime: str):
  """The validated --tff_workers list, or None when unset.

  Raises:
    ValueError: malformed addresses, or workers with a runtime other than tff.
  """
  if not value:
    return None
  runtime = getattr(runtime, "value", runtime)  # an enum or its value
  if runtime != "tff":
    raise ValueError(f"--tff_workers needs --runtime=tff (got --runtime="
                     f"{runtime}); the in-process runtime runs here")
  from fedmeta_tf.tff_process import remote  # pylint: disable=g-import-not-at-top
  return remote.parse_workers(value)


def flag_values(module_names) -> dict:
  """{name: value} of the flags defined by the given modules, JSON-normalised."""
  values = {}
  for module in module_names:
    for flag in flags.FLAGS.get_flags_for_module(module):
      values[flag.name] = flag.value
  return json.loads(json.dumps(values, sort_keys=True, default=str))


def _defaults(names) -> dict:
  """{name: default} of the given flags, JSON-normalised like `flag_values`."""
  values = {name: flags.FLAGS[name].default for name in names}
  return json.loads(json.dumps(values, sort_keys=True, default=str))


def prepare_run_dir(output_dir: str, module_names, *, overwrite: bool) -> bool:
  """Checks `output_dir` against this run's flags before anything is written.

  A directory written by a run with other flags is refused (ValueError naming
  the flags that differ) unless `overwrite`, which empties it first but for
  its lock file (`clear_run_dir`). Call it holding that lock
  (`lock_run_dir`). Writes the flags. Returns True when the same run already
  finished there (summary.json exists), so the caller need not redo it.
  """
  current = flag_values(module_names)
  flags_path = os.path.join(output_dir, "flags.json")
  if overwrite and os.path.isdir(output_dir):
    clear_run_dir(output_dir)
  elif os.path.isfile(flags_path):
    with open(flags_path) as f:
      previous = json.load(f)
    # A flag added since that run was written counts at its default.
    previous = dict(_defaults(set(current) - set(previous)), **previous)
    differ = sorted(k for k in set(current) | set(previous)
                    if k not in NON_EXPERIMENT_FLAGS
                    and current.get(k) != previous.get(k))
    if differ:
      raise ValueError(
          f"output directory {output_dir!r} holds a different experiment "
          f"(flags differ: {', '.join('--' + k for k in differ)}); choose "
          "another --experiment_name or pass --overwrite")
  write_flags(output_dir, module_names)
  return os.path.isfile(os.path.join(output_dir, "summary.json"))


def write_flags(output_dir: str, module_names) -> None:
  """Writes the run's flags (those of the given modules) as a flagfile and JSON."""
  values = flag_values(module_names)
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, "flags.txt.tmp"), "w") as f:
    f.write(flags.FLAGS.flags_into_string())
  os.replace(os.path.join(output_dir, "flags.txt.tmp"),
             os.path.join(output_dir, "flags.txt"))
  with open(os.path.join(output_dir, "flags.json.tmp"), "w") as f:
    json.dump(values, f, indent=2, sort_keys=True, default=str)
  os.replace(os.path.join(output_dir, "flags.json.tmp"),
             os.path.join(output_dir, "flags.json"))
  write_run_info(output_dir)


def write_run_info(output_dir: str) -> None:
  """Writes run_info.json: this process's command line, the machine, the
  code's commit and the start time (`fedmeta_tf.reporting.machine.run_info`;
  `binaries.report` shows them beside the run's numbers)."""
  from fedmeta_tf.reporting import machine  # pylint: disable=g-import-not-at-top
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, "run_info.json")
  with open(path + ".tmp", "w") as f:
    json.dump(machine.run_info(), f, indent=2)
  os.replace(path + ".tmp", path)


# --- one writer per run directory -------------------------------------------

LOCK_FILE = ".lock"

# The locks this process holds, oldest first (`user_errors_exit_2` releases
# those a main took).
_held_locks = []


class RunDirLock:
  """An exclusive lock on a run directory, held until `release` (or until the
  process exits). Usable as a context manager."""

  def __init__(self, output_dir: str, path: str, fd: int):
    self.output_dir = output_dir
    self.path = path  # The lock file.
    self._fd = fd

  @property
  def held(self) -> bool:
    return self._fd is not None

  def release(self) -> None:
    """Closes the lock file, which releases the lock; the file stays."""
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None
    if self in _held_locks:
      _held_locks.remove(self)

  def __enter__(self) -> "RunDirLock":
    return self

  def __exit__(self, *exc_info) -> None:
    self.release()


def lock_run_dir(output_dir: str, *,
                 alternative: Optional[str] = (
                     "choose another --experiment_name")
                 ) -> RunDirLock:
  """Makes this process the one writer of `output_dir`, or refuses.

  Guards a run directory against a second process writing it at the same
  time (the same command launched twice: a double-click, a re-submitted
  job), which would otherwise die on files the first one is writing or
  append the same metrics rows twice. Take it before anything is written or
  deleted there (`prepare_run_dir`, --overwrite).

  The lock is `flock(LOCK_EX | LOCK_NB)` on `<output_dir>/.lock` (created,
  with the directory, if missing), which then holds the holder's process id
  for the message. The kernel releases a flock when its process dies,
  however it dies (kill -9 included), so no stale lock is ever left to
  remove by hand; the file itself stays. Another open of the same file
  conflicts even in the same process. On NFS, Linux emulates flock with the
  server's byte-range locks, so the lock holds across hosts only where the
  mount has a working lock manager (not with `nolock` or `local_lock`).

  Args:
    output_dir: The directory this process is about to write.
    alternative: What else the user can do, for the message ("choose
      another --name"); None: only wait.

  Returns:
    The held lock, kept until `release` or the process's exit (a main
    wrapped by `user_errors_exit_2` releases it when it returns).

  Raises:
    ValueError: (one line) another process holds the lock; names the
      directory and that process's id.
  """
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, LOCK_FILE)
  # Not truncated here: it holds the holder's process id.
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = _lock_holder(fd)
    os.close(fd)
    by = f"process {holder}" if holder else "another process"
    raise ValueError(
        f"run directory {output_dir!r} is in use by {by} (another run is "
        "writing it); wait for it to finish" +
        (f" or {alternative}" if alternative else "")) from None
  except BaseException:
    os.close(fd)
    raise
  pid = f"{os.getpid()}\n".encode()
  # Rewritten only when another process held it last: a process that runs
  # again in its own directory (the test suite) leaves the file untouched.
  if os.pread(fd, 64, 0) != pid:
    os.ftruncate(fd, 0)
    os.pwrite(fd, pid, 0)
  lock = RunDirLock(output_dir, path, fd)
  _held_locks.append(lock)
  return lock


def _lock_holder(fd: int):
  """The process id in a held lock file, or None. The holder writes it just
  after taking the lock: an empty file is read again for a moment."""
  for _ in range(20):
    text = os.pread(fd, 64, 0).decode(errors="replace").strip()
    if text.isdigit():
      return int(text)
    time.sleep(0.05)
  return None


def clear_run_dir(output_dir: str) -> None:
  """Deletes everything in `output_dir` but its lock file (`lock_run_dir`):
  deleting that file would let another process lock a new one while this
  one still writes (--overwrite)."""
  for name in os.listdir(output_dir):
    if name == LOCK_FILE:
      continue
    path = os.path.join(output_dir, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    else:
      os.remove(path)


def define_progress_flag():
  """`--progress`: what a long run shows while it runs
  (`fedmeta_tf/reporting/progress.py`). Not an experiment setting."""
  return flags.DEFINE_enum(
      "progress", "auto", ["auto", "bars", "lines", "none"],
      "auto: progress bars (rounds, client work, evaluations; rate and ETA) "
      "when stderr is a terminal, else one concise line per round; bars; "
      "lines; none.", allow_override=True)


def configure_progress(value: str) -> None:
  from fedmeta_tf.reporting import progress  # pylint: disable=g-import-not-at-top
  progress.configure(value)
