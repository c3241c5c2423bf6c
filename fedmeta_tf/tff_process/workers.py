"""Lifecycle of TFF's C++ `worker_binary` subprocess (light: no TFF import).

TFF 0.87 starts a `worker_binary` subprocess and only stops it from a
`__del__` that fails at interpreter shutdown, so the worker outlives Python
and an AttributeError is printed. `install_cleanup_handlers()` (run when
`fedmeta_tf` is imported) stops every `worker_binary` child of this process
at interpreter exit and on SIGTERM, and silences TFF's failing finaliser.

SIGKILL cannot be caught: for it, a worker is started with `die_with_parent`
as its `preexec_fn` (TFF's local worker through `contexts.py`, ours through
`remote.start_worker`), which has the kernel kill it when its parent dies
(Linux prctl PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import gc
import logging
import os
import signal
import subprocess
import sys
import types
from typing import Callable, Optional

import psutil

WORKER_NAME = "worker_binary"
_handlers_installed = False
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@functools.lru_cache(maxsize=1)
def _libc_prctl():
  # Looked up in the parent: a forked child must not load libraries.
  prctl = ctypes.CDLL(None, use_errno=True).prctl
  prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
  prctl.restype = ctypes.c_int
  return prctl


def die_with_parent(
    then: Optional[Callable[[], None]] = None) -> Optional[Callable[[], None]]:
  """A `preexec_fn` under which the child gets SIGKILL when its parent dies
  (SIGKILL included), then runs `then`; `then` itself off Linux.

  The kernel signals when the *thread* that started the child ends: start
  workers from a thread that lives as long as they are needed (the main
  thread, or TFF's event-loop thread for its own worker).
  """
  if not sys.platform.startswith("linux"):
    return then
  prctl = _libc_prctl()
  parent = os.getpid()

  def preexec():
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # The parent died before the prctl.
      os._exit(1)  # pylint: disable=protected-access
    if then is not None:
      then()

  return preexec


class _PopenDyingWithParent(subprocess.Popen):
  """`subprocess.Popen` whose child dies with its parent (`die_with_parent`)."""

  def __init__(self, args, **kwargs):
    kwargs["preexec_fn"] = die_with_parent(kwargs.get("preexec_fn"))
    super().__init__(args, **kwargs)


class _SubprocessDyingWithParent(types.ModuleType):
  """The `subprocess` module, with `Popen` replaced by the above."""

  Popen = _PopenDyingWithParent

  def __getattr__(self, name):
    return getattr(subprocess, name)


def make_workers_die_with_parent(module: types.ModuleType) -> None:
  """Has every process `module` starts with `subprocess.Popen` die with this
  process (idempotent): `module` is TFF's, which starts the local worker
  without a `preexec_fn` of its own."""
  if isinstance(getattr(module, "subprocess", None),
                _SubprocessDyingWithParent):
    return
  if getattr(module, "subprocess", None) is not subprocess:
    raise RuntimeError(f"{module.__name__} no longer starts its worker with "
                       "subprocess.Popen; update workers.py")
  module.subprocess = _SubprocessDyingWithParent("subprocess")


def worker_processes() -> list[psutil.Process]:
  """TFF worker processes started by this process (directly or not)."""
  try:
    children = psutil.Process().children(recursive=True)
  except psutil.Error:
    return []
  found = []
  for child in children:
    try:
      if child.name() == WORKER_NAME:
        found.append(child)
    except psutil.Error:
      continue
  return found


def stop_workers(timeout: float = 5.0) -> None:
  """Terminates (then kills) this process's TFF workers and waits for them."""
  workers = worker_processes()
  for worker in workers:
    with contextlib.suppress(psutil.Error):
      worker.terminate()
  _, alive = psutil.wait_procs(workers, timeout=timeout)
  for worker in alive:
    with contextlib.suppress(psutil.Error):
      worker.kill()
  psutil.wait_procs(alive, timeout=timeout)
  if workers:
    _disarm_tff_service_managers()


def _disarm_tff_service_managers() -> None:
  # TFF's ServiceManager.__del__ would signal the (now reaped) worker again;
  # it has nothing left to do.
  for obj in gc.get_objects():
    if type(obj).__name__ == "ServiceManager" and hasattr(obj, "_process"):
      obj._process = None  # pylint: disable=protected-access


def _at_exit() -> None:
  stop_workers()
  # At interpreter shutdown TFF's ServiceManager.__del__ finds its module
  # globals already gone and prints an AttributeError: disarm every one.
  for obj in gc.get_objects():
    if type(obj).__name__ == "ServiceManager" and hasattr(obj, "_process"):
      type(obj).__del__ = lambda self: None
      break


def _exit_on_signal(signum, frame):
  del frame
  stop_workers()
  # SystemExit unwinds `finally` blocks and atexit handlers.
  sys.exit(128 + signum)


class _DropUnusedAssertNoise(logging.Filter):
  """Drops TF's "Object was never used" reports about TFF's own assertions
  (SecureSumFactory builds asserts it never runs): dozens of tracebacks per
  process build that say nothing about the user's program."""

  def filter(self, record):
    return "Object was never used" not in record.getMessage()


def install_cleanup_handlers() -> None:
  """Stops TFF workers at interpreter exit and on SIGTERM / SIGINT
  (idempotent)."""
  global _handlers_installed
  if _handlers_installed:
    return
  logging.getLogger("tensorflow").addFilter(_DropUnusedAssertNoise())
  atexit.register(_at_exit)
  if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
    signal.signal(signal.SIGTERM, _exit_on_signal)
  # Ctrl-C too: Python's KeyboardInterrupt is lost when it fires inside a
  # finalizer (`__del__`, weakref callbacks: "Exception ignored in ..."),
  # which TF and TFF run often, and the run would go on; stopping the
  # workers first makes the run end even then.
  if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _exit_on_signal)
  _handlers_installed = True
