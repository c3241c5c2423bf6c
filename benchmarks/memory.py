r"""Peak memory of a federated round vs clients per round and total clients.

    .venv/bin/python -m benchmarks.memory [--quick] [--runtimes=tff,inprocess]
        [--clients_per_round=4,16,64] [--num_clients=64,1024,16384]

Each measurement runs in a fresh subprocess (this script with --child):
it builds a federated Reptile job over M clients (Conv4 28x28, 64 filters,
secure-sum mean), runs two rounds of K clients each, and reports its peak
resident memory: of itself (the driver; for `inprocess` that is all the
work) from `resource.getrusage(RUSAGE_SELF).ru_maxrss`, and, for `tff`, of
TFF's C++ worker from the same kernel high-water mark read before the
worker stops (`VmHWM` in /proc/PID/status; RUSAGE_CHILDREN would also count
the short-lived children TensorFlow forks at import, which inherit the
driver's pages).

The data are fixed: one pool of 100 classes x 15 examples; client i holds a
view (no copy) of 10 of its classes, as the protocol's per-client class
pools do; so what grows with M is only what the runtime keeps per client.

Prints, per runtime: peak MB for K = 4, 16, 64 (M = max(K, first M)) with
the increment per added client, then peak MB for M = 64, 1024, 16384
(K = 4). Targets: peak grows at most linearly with K; it does not grow
with M.
--quick: K = 4, 16; M = 64, 4096; runtime tff.
"""

import json
import resource

from absl import app
from absl import flags
import numpy as np

from benchmarks import machine
from benchmarks import workloads
from binaries import common
# Imported here, not in the child's function: TF/Keras first imported under
# absl's app.run builds a broken Flatten layer (seen with TF 2.14).
from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.meta import client_work
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.models import conv4
from fedmeta_tf.runtime import inprocess
from fedmeta_tf.tff_process import contexts
from fedmeta_tf.tff_process import runner as runner_lib

_RUNTIMES = flags.DEFINE_list("runtimes", ["tff", "inprocess"],
                              "Runtimes to measure: tff, inprocess.")
_CLIENTS_PER_ROUND = flags.DEFINE_list(
    "clients_per_round", ["4", "16", "64"], "K values (clients per round).")
_NUM_CLIENTS = flags.DEFINE_list("num_clients", ["64", "1024", "16384"],
                                 "M values (total clients), at K = 4.")
_QUICK = flags.DEFINE_bool("quick", False,
                           "K = 4, 16; M = 64, 4096; runtime tff.")
_CHILD = flags.DEFINE_string(
    "child", None, "Internal: 'runtime:K:M' measures one setting and prints "
    "JSON.")

CLASSES, EXAMPLES, CLASSES_PER_CLIENT = 100, 15, 10


def measure(runtime: str, per_round: int, num_clients: int) -> dict:
  """Runs the job in this process; returns peak RSS figures in MB."""
  config = reptile_tf.ReptileConfig(iterations=1, meta_batch=2, inner_steps=2)
  base = np.random.default_rng(0).integers(
      0, 256, (CLASSES, EXAMPLES, 28, 28, 1), dtype=np.uint8)
  starts = [(7 * i) % (CLASSES - CLASSES_PER_CLIENT)
            for i in range(num_clients)]
  pools = [base[s:s + CLASSES_PER_CLIENT] for s in starts]  # views
  work = client_work.BenignReptile(config=config, run_seed=0,
                                   client_pools=pools)
  job = dict(model_fn=lambda: conv4.build_conv4((28, 28, 1), 5, seed=0),
             client_work=work, inner_lr=0.001,
             aggregator=aggregators.parse_aggregator("secure_mean"))
  rounds = [[(r * per_round + i) % num_clients for i in range(per_round)]
            for r in range(2)]
  worker_kib = 0
  if runtime == "inprocess":
    runner = inprocess.InProcessRunner(**job)
    state = runner.initialize()
    for clients in rounds:
      state, _ = runner.next(state, clients)
  else:
    with contexts.tff_runtime():  # stops the worker on exit
      runner = runner_lib.TffRunner(**job, image_shape=(28, 28, 1))
      state = runner.initialize()
      for clients in rounds:
        state, _ = runner.next(state, clients)
      worker_kib = max(machine.peak_kib(p.pid) for p in contexts.worker_processes())
  return {  # Linux reports ru_maxrss in KiB
      "driver_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "worker_mb": worker_kib / 1024}


_measured = {}


def run_child(runtime: str, per_round: int, num_clients: int) -> dict:
  """measure() in a fresh subprocess (each setting once)."""
  key = (runtime, per_round, num_clients)
  if key not in _measured:
    _measured[key] = _run_child(*key)
  return _measured[key]


def _run_child(runtime: str, per_round: int, num_clients: int) -> dict:
  return workloads.run_json_child(
      "benchmarks.memory", [f"--child={runtime}:{per_round}:{num_clients}"],
      f"memory child {runtime} K={per_round} M={num_clients}")


def _ints(name, values) -> list[int]:
  try:
    out = [int(v) for v in values]
  except ValueError:
    raise ValueError(f"--{name} must be integers, got {values}") from None
  if not out or min(out) < 1:
    raise ValueError(f"--{name} must be >= 1, got {values}")
  return out


def _peak(figures: dict, runtime: str) -> float:
  return figures["driver_mb"] + (figures["worker_mb"] if runtime == "tff"
                                 else 0.0)


def _row(figures: dict, runtime: str) -> str:
  text = f"peak {_peak(figures, runtime):7.0f} MB"
  if runtime == "tff":
    text += (f" (driver {figures['driver_mb']:.0f} + worker "
             f"{figures['worker_mb']:.0f})")
  return text


@common.user_errors_exit_2
def main(argv):
  del argv
  if _CHILD.value:
    runtime, per_round, num_clients = _CHILD.value.split(":")
    print(json.dumps(measure(runtime, int(per_round), int(num_clients))))
    return
  runtimes = _RUNTIMES.value
  per_rounds = _ints("clients_per_round", _CLIENTS_PER_ROUND.value)
  totals = _ints("num_clients", _NUM_CLIENTS.value)
  if _QUICK.value:
    runtimes, per_rounds, totals = ["tff"], [4, 16], [64, 4096]
  unknown = set(runtimes) - {"tff", "inprocess"}
  if unknown:
    raise ValueError(f"--runtimes: unknown {sorted(unknown)}; tff, inprocess")
  machine.print_machine(with_tensorflow=False)
  for runtime in runtimes:
    previous = None
    for k in per_rounds:
      m = max(k, totals[0])
      figures = run_child(runtime, k, m)
      line = f"{runtime:9s} K={k:3d} M={m:6d}: {_row(figures, runtime)}"
      if previous is not None:
        growth = ((_peak(figures, runtime) - _peak(previous[1], runtime))
                  / (k - previous[0]))
        line += f", +{growth:.1f} MB per added client per round"
      print(line, flush=True)
      previous = (k, figures)
    first = None
    for m in totals:
      k = min(4, m)
      figures = run_child(runtime, k, m)
      line = f"{runtime:9s} K={k:3d} M={m:6d}: {_row(figures, runtime)}"
      if first is None:
        first = figures
      else:
        line += (f", {_peak(figures, runtime) - _peak(first, runtime):+.0f} "
                 f"MB vs M={totals[0]}")
      print(line, flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
