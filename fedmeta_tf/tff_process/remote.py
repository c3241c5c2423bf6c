"""Rounds on TFF C++ workers on other machines (or other local processes).

TFF is the distributed engine: its C++ `worker_binary` (shipped in the
installed `tensorflow_federated` package, started by
`python -m binaries.tff_worker --port=N`) serves computations over gRPC.
`remote_tff_runtime(["host1:8000", "host2:8000"])` sets, for a block, TFF's
mergeable-computation execution context
(`tff.framework.MergeableCompExecutionContext`) over one async execution
context per worker, each a `tff.framework.RemoteExecutor` on a gRPC channel
to that worker. A call of a federated computation is then compiled to
TFF's `MergeableCompForm` (up to the aggregation / merge / after the
aggregation) and its CLIENTS-placed argument is split into one contiguous
slice of clients per worker: each worker trains its clients and
pre-aggregates them, the partial aggregates are merged, and the server
update runs once.

Secure sums: as in the local simulation context
(`tff.backends.test.create_sync_test_cpp_execution_context`), the secure
intrinsics are replaced by their insecure bodies (TFF's test compiler)
*after* the computation has been built -- the static check for unsecure
aggregation (`tests/tff_process/process_test.py`) runs on the uncompiled
round -- and *before* the mergeable compilation, which only knows the plain
aggregations. The arithmetic is the local context's: the same clipping and
32-bit quantisation per client, integer sums merged across workers.

The mergeable form needs a round with one logical aggregation (parallel
aggregations allowed, none depending on another); `build_fedmeta_process`'s
round and its `initialize` qualify.

A worker that does not answer when the context is created, or stops
answering for `retry_s` during a call, is a one-line error naming it
(`WorkerLostError`); TFF's own context would retry it forever.

`loopback_workers(n)` starts n workers on free local ports for tests and
benchmarks and always stops them.

No security: the worker's gRPC port is unauthenticated and unencrypted; run
workers on a private network or behind an SSH tunnel (BUILD.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import subprocess
import sys
import time
from typing import Iterator, Sequence

WORKER_BINARY = "worker_binary"
# TFF's own channel options for its local worker (executor_stacks/
# executor_factory.py): messages up to 2 GB (the model and client data).
_GRPC_MAX_MESSAGE_BYTES = 2 * 1000 * 1000 * 1000
_GRPC_OPTIONS = [
    ("grpc.max_message_length", _GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", _GRPC_MAX_MESSAGE_BYTES),
]
_TARGET = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):"
                     r"(?P<port>[0-9]{1,5})$")


def worker_binary_path() -> str:
  """Path of TFF's C++ worker in the installed package (no TFF import).

  Raises:
    ValueError: tensorflow_federated is not installed or has no worker.
  """
  spec = importlib.util.find_spec("tensorflow_federated")
  if spec is None or not spec.submodule_search_locations:
    raise ValueError("tensorflow_federated is not installed in this Python "
                     f"({sys.executable}); run scripts/bootstrap.sh")
  path = os.path.join(list(spec.submodule_search_locations)[0], "data",
                      WORKER_BINARY)
  if not os.access(path, os.X_OK):
    raise ValueError(f"TFF's worker binary is missing or not executable: "
                     f"{path}")
  return path


def parse_workers(spec: str | Sequence[str]) -> list[str]:
  """`"host:port,host:port"` (or a list) -> validated ["host:port", ...].

  Raises:
    ValueError: one line naming the bad entry and the expected form.
  """
  items = spec.split(",") if isinstance(spec, str) else list(spec)
  items = [item.strip() for item in items]
  if not items or not all(items):
    raise ValueError(f"--tff_workers {spec!r}: expected host:port[,host:port"
                     "...], with no empty entries")
  for item in items:
    match = _TARGET.match(item)
    if not match or not 1 <= int(match["port"]) <= 65535:
      raise ValueError(f"--tff_workers entry {item!r} is not host:port "
                       "(port 1..65535), e.g. 10.0.0.2:8000")
  if len(set(items)) != len(items):
    raise ValueError(f"--tff_workers {spec!r} names a worker twice")
  return items


class WorkerLostError(ValueError):
  """A TFF worker stopped answering during a computation.

  A ValueError so that the binaries report it in one line (exit status 2);
  the run's last completed round is checkpointed, so re-running the same
  command once the worker is back resumes the run.
  """


def _worker_context_class():
  """`tff.framework.AsyncExecutionContext` for one worker, whose calls fail
  (WorkerLostError) once the worker has been unreachable for `retry_s`:
  TFF's own context retries unavailable workers forever."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  from tensorflow_federated.python.common_libs import async_utils  # pylint: disable=g-import-not-at-top
  from tensorflow_federated.python.core.impl.executors import executors_errors  # pylint: disable=g-import-not-at-top

  base = tff.framework.AsyncExecutionContext
  # The invoke under TFF's unbounded `retrying.retry` decorator.
  unretried_invoke = getattr(base.invoke, "__wrapped__", base.invoke)

  class WorkerContext(base):
    """One worker's context, on its own event-loop thread.

    TFF's RemoteExecutor makes blocking gRPC calls inside its coroutines
    (`compute` waits for the worker to finish training its clients). On the
    mergeable context's single event loop those calls would run the workers
    one after another; each worker's calls run on a loop of their own, so
    the workers train at the same time.
    """

    def __init__(self, target: str, retry_s: float, **kwargs):
      super().__init__(**kwargs)
      self._target = target
      self._retry_s = retry_s
      self._loop = async_utils.AsyncThreadRunner()

    async def invoke(self, comp, arg):
      return await self._loop.await_coro_and_return_result(
          self._invoke_retrying(comp, arg))

    async def _invoke_retrying(self, comp, arg):
      deadline = time.monotonic() + self._retry_s
      wait_s = 0.1
      while True:
        try:
          return await unretried_invoke(self, comp, arg)
        except executors_errors.RetryableError as e:
          if time.monotonic() > deadline:
            raise WorkerLostError(
                f"TFF worker {self._target} stopped answering for "
                f"{self._retry_s:g} s ({type(e).__name__}); restart it and "
                "re-run the same command to resume") from None
          await asyncio.sleep(wait_s)
          wait_s = min(2 * wait_s, 5.0)

  return WorkerContext


def _wait_ready(stubs, targets, timeout_s: float) -> None:
  deadline = time.monotonic() + timeout_s
  for stub, target in zip(stubs, targets):
    while not stub.is_ready:
      if time.monotonic() > deadline:
        raise ValueError(
            f"TFF worker {target} did not answer within {timeout_s:g} s; "
            "start it with `python -m binaries.tff_worker --port=PORT` on "
            "that host and check the address and firewall")
      time.sleep(0.1)


def _connect(targets: Sequence[str], timeout_s: float) -> tuple[list, list]:
  """gRPC channels to `targets` and TFF stubs on them, once all answer."""
  import grpc  # pylint: disable=g-import-not-at-top
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  channels = [grpc.insecure_channel(t, _GRPC_OPTIONS) for t in targets]
  stubs = [tff.framework.RemoteExecutorGrpcStub(c)
           for c in channels]
  try:
    _wait_ready(stubs, targets, timeout_s)
  except BaseException:
    for channel in channels:
      channel.close()
    raise
  return channels, stubs


def _worker_contexts(targets: Sequence[str], stubs, retry_s: float) -> list:
  """One async execution context per worker, retrying for `retry_s`."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  # pylint: disable=g-import-not-at-top
  from tensorflow_federated.python.core.environments.tensorflow_frontend import tensorflow_computation
  from tensorflow_federated.python.core.impl.executor_stacks import python_executor_stacks
  # pylint: enable=g-import-not-at-top

  def executor_factory(stub):
    def stack_fn(cardinalities):
      # The merge and no-argument calls carry no clients (as TFF's local
      # factory with default_num_clients=0).
      cardinalities.setdefault(tff.CLIENTS, 0)
      executor = tff.framework.RemoteExecutor(stub)
      executor.set_cardinalities(cardinalities)
      return executor
    return python_executor_stacks.ResourceManagingExecutorFactory(
        executor_stack_fn=stack_fn)

  worker_context = _worker_context_class()
  return [
      worker_context(
          target, retry_s,
          executor_fn=executor_factory(stub),
          compiler_fn=tff.backends.native.desugar_and_transform_to_native,
          transform_args=tensorflow_computation.transform_args,
          transform_result=tensorflow_computation.transform_result)
      for target, stub in zip(targets, stubs)]


def create_remote_context(targets: Sequence[str], *,
                          connect_timeout_s: float = 60.0,
                          retry_s: float = 60.0):
  """TFF's mergeable-computation context over one remote worker per target.

  Returns (context, channels); close the channels when done. A call fails
  with WorkerLostError when a worker is unreachable for `retry_s`.

  Raises:
    ValueError: a target is malformed or does not answer within
      `connect_timeout_s`.
  """
  targets = parse_workers(targets)
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  # pylint: disable=g-import-not-at-top
  from tensorflow_federated.python.core.backends.test import compiler as test_compiler
  from tensorflow_federated.python.core.environments.tensorflow_frontend import tensorflow_computation
  # pylint: enable=g-import-not-at-top

  channels, stubs = _connect(targets, connect_timeout_s)
  worker_contexts = _worker_contexts(targets, stubs, retry_s)

  def compile_fn(comp):
    # The local test context's secure-sum lowering, then TFF's mergeable
    # compilation (which splits the round at its aggregation).
    comp = test_compiler.replace_secure_intrinsics_with_bodies(comp)
    return tff.backends.native.compile_to_mergeable_comp_form(comp)

  context = tff.framework.MergeableCompExecutionContext(
      async_contexts=worker_contexts, compiler_fn=compile_fn,
      transform_args=tensorflow_computation.transform_args,
      transform_result=tensorflow_computation.transform_result)
  return context, channels


@contextlib.contextmanager
def remote_tff_runtime(targets: str | Sequence[str], *,
                       connect_timeout_s: float = 60.0,
                       retry_s: float = 60.0) -> Iterator[None]:
  """Runs TFF computations of the block on the given workers.

  The workers are not started or stopped here (they belong to their hosts);
  the gRPC channels are closed when the block exits, however it exits.
  """
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  from fedmeta_tf.tff_process import workers  # pylint: disable=g-import-not-at-top
  workers.install_cleanup_handlers()
  context, channels = create_remote_context(
      targets, connect_timeout_s=connect_timeout_s, retry_s=retry_s)
  with tff.framework.get_context_stack().install(context):
    try:
      yield
    finally:
      for channel in channels:
        channel.close()


def free_port() -> int:
  """A TCP port free on this host (portpicker, as TFF's local context)."""
  import portpicker  # pylint: disable=g-import-not-at-top
  return portpicker.pick_unused_port()


def start_worker(port: int, *, max_concurrent_computation_calls: int = -1,
                 cpus: Sequence[int] | None = None,
                 quiet: bool = True) -> subprocess.Popen:
  """Starts TFF's worker on `port` here (a child process; stop it; it dies
  with the thread that started it, `workers.die_with_parent`).

  `cpus`: pin the worker to these CPU cores (Linux), e.g. to emulate
  separate machines on one host in benchmarks.
  """
  from fedmeta_tf.tff_process import workers  # pylint: disable=g-import-not-at-top
  out = subprocess.DEVNULL if quiet else None
  pin = None
  if cpus is not None:
    cpus = sorted(set(cpus))
    pin = lambda: os.sched_setaffinity(0, cpus)  # pylint: disable=unnecessary-lambda-assignment
  return subprocess.Popen(
      [worker_binary_path(), f"--port={port}",
       f"--max_concurrent_computation_calls="
       f"{max_concurrent_computation_calls}"], stdout=out, stderr=out,
      preexec_fn=workers.die_with_parent(pin))


def stop_processes(processes, timeout_s: float = 10.0) -> None:
  """Terminates (then kills) the given worker processes and reaps them."""
  for process in processes:
    if process.poll() is None:
      process.terminate()
  for process in processes:
    try:
      process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait(timeout=timeout_s)


@contextlib.contextmanager
def loopback_workers(n: int, *, max_concurrent_computation_calls: int = -1,
                     cores_per_worker: int | None = None,
                     quiet: bool = True) -> Iterator[list[str]]:
  """Starts `n` TFF workers on free loopback ports; yields their targets.

  `cores_per_worker`: pin worker i to its own `cores_per_worker` cores
  (round robin over this process's cores; workers share cores only when
  there are too few), so that n workers emulate n machines; None: no pinning.

  The workers are stopped when the block exits, however it exits (and, as
  children named `worker_binary`, by `workers.py` at interpreter exit).
  Note `contexts.tff_runtime()` stops every `worker_binary` child of this
  process when it exits, these included: do not nest it inside this block.
  """
  if n < 1:
    raise ValueError(f"loopback_workers needs n >= 1, got {n}")
  if cores_per_worker is not None and cores_per_worker < 1:
    raise ValueError(f"cores_per_worker must be >= 1, got {cores_per_worker}")
  cores = sorted(os.sched_getaffinity(0))
  processes = []
  try:
    ports = []
    for i in range(n):
      cpus = None
      if cores_per_worker is not None:
        cpus = [cores[(i * cores_per_worker + j) % len(cores)]
                for j in range(cores_per_worker)]
      port = free_port()
      ports.append(port)
      processes.append(start_worker(
          port, max_concurrent_computation_calls=(
              max_concurrent_computation_calls), cpus=cpus, quiet=quiet))
    yield [f"localhost:{port}" for port in ports]
  finally:
    stop_processes(processes)
