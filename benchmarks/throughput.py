r"""Inner-loop throughput (in-graph vs per-step calls) and TFF / in-process
round time.

    .venv/bin/python -m benchmarks.throughput [--quick]
        [--shapes=28x28x1:10,64x64x3:6,84x84x3:10] [--variants=maxpool,strided]
        [--steps=300] [--python_steps=100] [--rounds=2] [--parts=inner,round]

Prints the machine, then:
  1. `inner`: SGD steps per second of the Reptile inner loop (Conv4, 64
     filters, Adam, 5-way episodes of 50 images) for each image shape and
     batch size (28x28x1 batch 10: Omniglot/glyphs; 64x64x3 batch 6: CelebA;
     84x84x3 batch 10: mini-ImageNet) and both Conv4 variants, two ways on
     the same model:
       in-graph: `reptile_tf.train_steps`, all steps in one tf.function call
         (what the client work runs);
       per-step: one tf.function call per SGD step from a Python loop, the
         step's loss fetched each time (`session.run([train_op, loss])`
         style);
     and their ratio (target >= 1.5). Warm-up calls (tracing) are excluded;
     each rate is the best of 3 timings (the machine may be shared).
  2. `round`: seconds per federated round on the same work (same clients,
     same seeds) in the TFF runtime (C++ worker, secure-sum mean) and in the
     in-process driver, and their ratio (target <= 1.10): the fastest of
     --rounds rounds after a warm-up round (tracing, compilation). The
     in-process driver is timed twice: one client after another
     (--parallelism=1) in this process, and with the binaries' automatic
     --parallelism in a fresh process (`benchmarks.parallel`'s child: thread
     pools are set per process), the fair comparison.
  3. `precision` (not run by default): in-graph SGD steps/s of the same
     inner loop in float32 and under Keras `mixed_bfloat16` (`--precision`
     of train_fedmeta, `fedmeta_tf/models/precision.py`), side by side in
     this process, and their ratio (issue #20's targets where the hardware
     has bfloat16: >= 1.5 at 84x84x3, >= 1.2 at 28x28x1), after a line
     saying whether this machine computes bfloat16 natively. The two
     precisions' timings alternate (5 each, the best kept), so a shared
     machine's slow spells do not favour either.
--quick: fewer steps (about a minute on 2 cores).
"""

from absl import app
from absl import flags

from benchmarks import machine
from binaries import common
from benchmarks.workloads import in_graph_timer
from benchmarks.workloads import inner_loop_rates
from benchmarks.workloads import interleaved_rates
from benchmarks.workloads import parse_shape
from benchmarks.workloads import round_seconds
from benchmarks.workloads import round_setup
from benchmarks.workloads import run_json_child
from fedmeta_tf.models import precision
from fedmeta_tf.runtime import inprocess
from fedmeta_tf.tff_process import contexts
from fedmeta_tf.tff_process import runner

_SHAPES = flags.DEFINE_list(
    "shapes", ["28x28x1:10", "64x64x3:6", "84x84x3:10"],
    "Image shapes and batch sizes, HxWxC:batch.")
_VARIANTS = flags.DEFINE_list("variants", ["maxpool", "strided"],
                              "Conv4 variants.")
_STEPS = flags.DEFINE_integer("steps", 300,
                              "Inner steps timed in one in-graph call.")
_PYTHON_STEPS = flags.DEFINE_integer(
    "python_steps", 100, "Inner steps timed in the per-step call loop.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Timed rounds per runtime.")
_ITERATIONS = flags.DEFINE_integer("iterations", 10, "E per client and round.")
_CLIENTS = flags.DEFINE_integer("clients", 3, "Clients per round.")
_PARTS = flags.DEFINE_list("parts", ["inner", "round"],
                           "What to measure: inner, round, precision.")
_QUICK = flags.DEFINE_bool(
    "quick", False, "--steps=60 --python_steps=30 --rounds=1 --iterations=4.")

# Timings per precision in `precision`: the two alternate, best of each kept.
_PRECISION_REPEATS = 5


@common.user_errors_exit_2
def main(argv):
  del argv
  steps, python_steps = _STEPS.value, _PYTHON_STEPS.value
  rounds, iterations = _ROUNDS.value, _ITERATIONS.value
  if _QUICK.value:
    steps, python_steps, rounds, iterations = 60, 30, 1, 4
  shapes = [parse_shape(s) for s in _SHAPES.value]
  unknown = set(_PARTS.value) - {"inner", "round", "precision"}
  if unknown:
    raise ValueError(f"--parts: unknown {sorted(unknown)}; inner, round, "
                     "precision")
  machine.print_machine()

  if "inner" in _PARTS.value:
    for shape, batch in shapes:
      for variant in _VARIANTS.value:
        graph_rate, call_rate = inner_loop_rates(shape, batch, variant, steps,
                                                 python_steps)
        print(f"inner loop, Conv4 {variant:8s} "
              f"{'x'.join(map(str, shape)):8s} batch {batch:2d}: in-graph "
              f"{graph_rate:7.1f} SGD steps/s, per-step calls "
              f"{call_rate:7.1f} steps/s, ratio {graph_rate / call_rate:.2f} "
              f"(target >= 1.5)", flush=True)

  if "precision" in _PARTS.value:
    _print_precision_rates(shapes, steps)

  if "round" in _PARTS.value:
    job, config = round_setup(iterations, max(_CLIENTS.value, 1))
    clients = list(range(_CLIENTS.value))
    local = round_seconds(lambda: inprocess.InProcessRunner(**job),
                          clients, rounds)
    with contexts.tff_runtime():
      federated = round_seconds(
          lambda: runner.TffRunner(**job, image_shape=(28, 28, 1)),
          clients, rounds)
    per_client = config.iterations * config.meta_batch * config.inner_steps
    automatic = run_json_child(
        "benchmarks.parallel",
        ["--child=0", "--parts=round", f"--iterations={iterations}",
         f"--clients={len(clients)}", f"--repeats={rounds}"],
        "in-process round, automatic parallelism")
    print(f"round ({len(clients)} clients x {per_client} steps): "
          f"in-process {local:.2f} s (1 stream), "
          f"{automatic['round_s']:.2f} s ({automatic['streams']} streams, "
          f"automatic), TFF {federated:.2f} s; ratio TFF/in-process "
          f"{federated / local:.3f} (1 stream), "
          f"{federated / automatic['round_s']:.3f} (automatic) "
          f"(target <= 1.10)")


def _print_precision_rates(shapes, steps: int) -> None:
  """Part 3: float32 vs mixed_bfloat16 in-graph steps/s, side by side."""
  mixed = precision.Precision.MIXED_BFLOAT16
  why = precision.why_slower_here(mixed)
  print(f"bfloat16 here: {'native' if why is None else 'emulated: ' + why}")
  for shape, batch in shapes:
    for variant in _VARIANTS.value:
      rates = interleaved_rates(
          {name: in_graph_timer(shape, batch, variant, steps, name)
           for name in ("float32", mixed.value)}, _PRECISION_REPEATS)
      print(f"precision, Conv4 {variant:8s} {'x'.join(map(str, shape)):8s} "
            f"batch {batch:2d}: float32 {rates['float32']:7.1f} steps/s, "
            f"mixed_bfloat16 {rates[mixed.value]:7.1f} steps/s, ratio "
            f"{rates[mixed.value] / rates['float32']:.2f}", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
