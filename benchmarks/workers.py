r"""Time per federated round on 1, 2, 4 TFF workers (scaling efficiency).

    .venv/bin/python -m benchmarks.workers [--quick] [--workers=1,2,4]
        [--clients=4] [--iterations=10] [--rounds=2] [--cores_per_worker=0]

Prints the machine, then seconds per round of the same federated Reptile
job (`benchmarks.workloads.round_setup`: Conv4 28x28, secure-sum mean,
--clients clients per round) run
  - in-process (`runtime/inprocess.py`),
  - in TFF's local test context (`contexts.tff_runtime()`, one C++ worker),
  - on n loopback TFF workers (`remote.loopback_workers`, the same
    `--tff_workers` path as a multi-host run), clients split across them,
and for the workers the speed-up over one worker and the scaling efficiency
(speed-up / n). Target: 2 workers >= 1.6x one worker on a 4-client round,
on a machine with enough cores.

Each worker is pinned to its own --cores_per_worker cores so that n workers
emulate n machines (0: usable cores / 2, so two workers fill this machine;
-1: no pinning, every worker sees every core). With more workers than
cores / cores_per_worker, workers share cores and cannot go faster. Each
figure is the fastest of --rounds rounds after a warm-up round (tracing,
compilation).
--quick: --iterations=2 --rounds=2 --workers=1,2.
"""

import time

from absl import app
from absl import flags

from benchmarks import machine
from binaries import common
from benchmarks import workloads
from fedmeta_tf.runtime import inprocess
from fedmeta_tf.tff_process import contexts
from fedmeta_tf.tff_process import remote
from fedmeta_tf.tff_process import runner

_WORKERS = flags.DEFINE_list("workers", ["1", "2", "4"],
                             "Numbers of loopback workers to time.")
_CLIENTS = flags.DEFINE_integer("clients", 4, "Clients per round.")
_ITERATIONS = flags.DEFINE_integer("iterations", 10, "E per client and round.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Timed rounds per setting.")
_CORES_PER_WORKER = flags.DEFINE_integer(
    "cores_per_worker", 0,
    "Cores each worker is pinned to; 0: usable cores / 2; -1: no pinning.")
_QUICK = flags.DEFINE_bool("quick", False,
                           "--iterations=2 --rounds=2 --workers=1,2.")


@common.user_errors_exit_2
def main(argv):
  del argv
  iterations, rounds = _ITERATIONS.value, _ROUNDS.value
  worker_counts = _WORKERS.value
  if _QUICK.value:
    iterations, rounds, worker_counts = 2, 2, ["1", "2"]
  try:
    worker_counts = [int(n) for n in worker_counts]
  except ValueError:
    raise ValueError(f"--workers must be integers, got {worker_counts}")
  if min(worker_counts) < 1 or _CLIENTS.value < 1:
    raise ValueError("--workers and --clients must be >= 1")
  cores = machine.usable_cores()
  pin = _CORES_PER_WORKER.value
  pin = None if pin < 0 else (pin or max(1, cores // 2))
  machine.print_machine()

  job, config = workloads.round_setup(iterations, _CLIENTS.value)
  clients = list(range(_CLIENTS.value))
  steps = config.iterations * config.meta_batch * config.inner_steps
  print(f"round: {len(clients)} clients x {steps} SGD steps (Conv4 28x28 "
        f"batch {config.inner_batch}); workers pinned to "
        f"{'all' if pin is None else pin} core(s) each", flush=True)

  def tff_round(**_):
    return workloads.round_seconds(
        lambda: runner.TffRunner(**job, image_shape=(28, 28, 1)), clients,
        rounds)

  local = workloads.round_seconds(
      lambda: inprocess.InProcessRunner(**job), clients, rounds)
  print(f"in-process:            {local:6.2f} s/round", flush=True)
  # Before any loopback worker: tff_runtime() stops every worker child.
  with contexts.tff_runtime():
    single = tff_round()
  print(f"TFF local context:     {single:6.2f} s/round "
        "(one worker on every core)", flush=True)

  times = {}
  for n in worker_counts:
    start = time.perf_counter()
    with remote.loopback_workers(n, cores_per_worker=pin) as targets:
      with contexts.tff_runtime(workers=targets):
        times[n] = tff_round()
    line = f"{n} loopback worker(s): {times[n]:6.2f} s/round"
    if 1 in times and n != 1:
      speedup = times[1] / times[n]
      line += (f", speed-up over 1 worker {speedup:.2f}x, efficiency "
               f"{speedup / n:.0%}")
    print(line + f" (setting up and timing: "
          f"{time.perf_counter() - start:.0f} s)", flush=True)
  if 1 in times and 2 in times:
    print(f"2 workers vs 1: {times[1] / times[2]:.2f}x (target >= 1.6 with "
          f"enough cores; this machine: {cores} usable cores, "
          f"{'all' if pin is None else pin} per worker)")


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
