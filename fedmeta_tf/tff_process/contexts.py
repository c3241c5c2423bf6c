"""TFF execution contexts and the lifecycle of TFF's C++ worker.

Simulation runs in `tff.backends.test`'s C++ context: TFF's default native
context refuses `federated_secure_sum*`; the test context compiles the
secure sums to plain sums *after* the computation has been built (the
static check for unsecure aggregation runs on the uncompiled computation).

`tff_runtime()` owns TFF's `worker_binary` subprocess: it stops it when the
block exits, normally or by an exception (including KeyboardInterrupt);
`workers.py` also stops it at interpreter exit and on SIGTERM, and the kernel
kills it when this process dies otherwise (SIGKILL; PR_SET_PDEATHSIG).

`tff_runtime(workers="host:port,...")` runs the block's computations on TFF
workers started elsewhere (`python -m binaries.tff_worker`), with the same
secure-sum compilation, clients split across the workers (`remote.py`).
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import tensorflow_federated as tff
from tensorflow_federated.python.core.impl.executor_stacks import executor_factory

from fedmeta_tf.tff_process import remote
from fedmeta_tf.tff_process import workers as workers_lib
from fedmeta_tf.tff_process.workers import install_cleanup_handlers
from fedmeta_tf.tff_process.workers import stop_workers
from fedmeta_tf.tff_process.workers import worker_processes  # noqa: F401


@contextlib.contextmanager
def tff_runtime(workers: str | Sequence[str] | None = None):
  """Sets TFF's C++ test context (secure sums allowed) for the block.

  The worker subprocess is stopped when the block exits, however it exits.

  Args:
    workers: None or empty: one local C++ worker started here. Otherwise
      "host:port,..." (or a list) of running TFF workers: the block's rounds
      run on them (`remote.remote_tff_runtime`); they are not stopped here.

  Raises:
    ValueError: a malformed worker address or one that does not answer.
  """
  if workers:
    with remote.remote_tff_runtime(workers):
      yield
    return
  install_cleanup_handlers()
  # TFF 0.87 starts its local worker from this module, without preexec_fn.
  workers_lib.make_workers_die_with_parent(executor_factory)
  tff.backends.test.set_sync_test_cpp_execution_context()
  try:
    yield
  finally:
    stop_workers()
