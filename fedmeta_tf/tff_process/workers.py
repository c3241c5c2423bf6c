"""Lifecycle of TFF's C++ `worker_binary` subprocess (light: no TFF import).

TFF 0.87 starts a `worker_binary` subprocess and only stops it from a
`__del__` that fails at interpreter shutdown, so the worker outlives Python
and an AttributeError is printed. `install_cleanup_handlers()` (run when
`fedmeta_tf` is imported) stops every `worker_binary` child of this process
at interpreter exit and on SIGTERM, and silences TFF's failing finaliser.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import signal
import sys

import psutil

WORKER_NAME = "worker_binary"
_handlers_installed = False


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
