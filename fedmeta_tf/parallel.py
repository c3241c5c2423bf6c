"""Independent tf.function work items run side by side on a multi-core CPU.

On a CPU, one Conv4 inner loop (batch 10, 28x28) cannot keep several cores
busy: TensorFlow's intra-op threads split each small convolution, and the
split costs about as much as it saves. Independent streams do scale. Measured
on the 2-core development machine (`benchmarks.throughput --parts=parallel`):
one stream 110-120 SGD steps/s; two streams in two threads with one intra-op
thread each 200 steps/s (1.7x). The TFF runtime already gets this by running
clients concurrently in its C++ worker; the in-process driver and the
evaluators get it from `ReplicaPool`.

Work items must be independent and deterministic given their inputs (a
client's update is a function of the global weights, its data and its
seeds; an evaluation episode of the weights and its seed), so the results,
returned in item order, equal those of a sequential run.

Each thread owns one replica (its own Keras model, optimizer and
tf.function), so no variable is shared between threads.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Callable, Generic, Optional, Sequence, TypeVar

from absl import logging
import tensorflow as tf

Replica = TypeVar("Replica")
Item = TypeVar("Item")
Result = TypeVar("Result")


def available_cores() -> int:
  """CPU cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def gpu_visible() -> bool:
  return bool(tf.config.list_physical_devices("GPU"))


def default_parallelism(max_items: int) -> int:
  """Work items to run at once: 1 on a GPU (one device, kernels queue up
  anyway), else min(cores, max_items)."""
  if gpu_visible():
    return 1
  return max(1, min(available_cores(), max_items))


def configure_cpu_threads(parallelism: int) -> int:
  """Gives each of `parallelism` concurrent streams its share of the cores.

  Sets TensorFlow's intra-op threads to cores // parallelism (at least 1)
  when `parallelism` > 1. Must run before TensorFlow executes its first op
  (TensorFlow fixes its thread pools then); otherwise the setting is left as
  it is and a warning says so. Returns the intra-op thread count in force
  (0: TensorFlow's default, all cores).
  """
  if parallelism <= 1 or gpu_visible():
    return tf.config.threading.get_intra_op_parallelism_threads()
  threads = max(1, available_cores() // parallelism)
  try:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
  except RuntimeError:
    logging.warning(
        "TensorFlow is already initialized: intra-op threads stay at %d; "
        "%d parallel streams may oversubscribe the %d cores",
        tf.config.threading.get_intra_op_parallelism_threads(), parallelism,
        available_cores())
  return tf.config.threading.get_intra_op_parallelism_threads()


_streams = 1  # set once per process by `configure`


def configure(requested: int, typical_items: int) -> int:
  """Sets how many work items this process runs at once, and the threads.

  Args:
    requested: streams; 0 picks `default_parallelism(typical_items)`.
    typical_items: work items usually available at once (clients per round).

  Returns:
    The stream count, which `streams()` reports from then on.
  """
  global _streams
  if requested < 0:
    raise ValueError(f"--parallelism must be >= 0 (0: automatic), got "
                     f"{requested}")
  _streams = requested or default_parallelism(typical_items)
  threads = configure_cpu_threads(_streams)
  logging.info("parallelism: %d streams, %s intra-op threads each, %d cores",
               _streams, threads or "default", available_cores())
  return _streams


def streams() -> int:
  """Work items to run at once (1 unless a binary called `configure`)."""
  return _streams


class ReplicaPool(Generic[Replica]):
  """`size` replicas, each used by one thread at a time.

  `map(fn, items)` calls `fn(replica, item)` for every item, at most `size`
  at once, and returns the results in item order; the first failing item's
  exception is raised. With size 1 it is a plain loop in the calling thread.

  The threads are daemon threads started per call (a round's work is seconds
  to minutes, the start microseconds): a SIGTERM or Ctrl-C in the main thread
  ends the program at once instead of waiting, as `concurrent.futures`
  threads would at exit, for a long client update to finish.
  """

  def __init__(self, make_replica: Callable[[], Replica], size: int):
    if size <= 0:
      raise ValueError(f"parallelism must be positive, got {size}")
    self.replicas = [make_replica() for _ in range(size)]

  @property
  def size(self) -> int:
    return len(self.replicas)

  def map(self, fn: Callable[[Replica, Item], Result],
          items: Sequence[Item],
          on_done: Optional[Callable[[Item], None]] = None) -> list[Result]:
    """`on_done(item)`, if given, runs after each item (in its thread)."""
    if on_done is not None:
      inner = fn

      def fn(replica, item):  # pylint: disable=function-redefined
        result = inner(replica, item)
        on_done(item)
        return result

    if self.size == 1 or len(items) <= 1:
      return [fn(self.replicas[0], item) for item in items]
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for index, item in enumerate(items):
      todo.put((index, item))
    results: list = [None] * len(items)
    errors: dict[int, BaseException] = {}

    def work(replica):
      while not errors:
        try:
          index, item = todo.get_nowait()
        except queue.Empty:
          return
        try:
          results[index] = fn(replica, item)
        except BaseException as e:  # pylint: disable=broad-except
          errors[index] = e

    threads = [threading.Thread(target=work, args=(replica,), daemon=True,
                                name=f"replica-{k}")
               for k, replica in enumerate(self.replicas[:len(items)])]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
    if errors:
      raise errors[min(errors)]
    return results

  def map_chunks(self, fn: Callable[[Replica, tuple[int, int]], Result],
                 count: int, *, chunks_per_replica: int = 1,
                 on_done: Optional[Callable[[int], None]] = None
                 ) -> list[Result]:
    """`fn(replica, (start, stop))` over `size * chunks_per_replica`
    contiguous chunks of range(count) (`split_range`), `size` at once;
    results in chunk order, ready to concatenate. `on_done(n)` runs after
    each chunk of n items (a progress bar: more chunks, finer steps)."""
    done = None if on_done is None else (
        lambda chunk: on_done(chunk[1] - chunk[0]))
    return self.map(fn, split_range(count, self.size * chunks_per_replica),
                    on_done=done)


def split_range(count: int, parts: int) -> list[tuple[int, int]]:
  """[(start, stop)] of at most `parts` contiguous, near-equal, non-empty
  chunks of range(count)."""
  parts = max(1, min(parts, count))
  bounds = [count * k // parts for k in range(parts + 1)]
  return [(bounds[k], bounds[k + 1]) for k in range(parts)]
