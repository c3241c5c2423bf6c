r"""The GPU check (issue #20, item 5): placement, a round and an evaluation in
both precisions, and their throughput, in one short run.

    .venv/bin/python -m benchmarks.gpu_check [--quick] [--allow_cpu]

Prints the machine (GPUs named), then:
  1. placement: where a Conv4 forward pass and its variables are (on a GPU
     machine both must be on GPU:0; the line says so when not), and whether
     the GPU computes bfloat16 natively (compute capability >= 8.0);
  2. for float32 and mixed_bfloat16 (`--precision`,
     `fedmeta_tf/models/precision.py`): in-graph SGD steps/s of the Reptile
     inner loop (Conv4, 64 filters, Adam) at 28x28x1 and 84x84x3, batch 10;
     seconds per in-process federated round (3 clients, E = --iterations,
     `benchmarks.parallel`'s round); seconds per backdoor evaluation
     (--eval_episodes 5-way 5-shot episodes x 50 steps) and its main-task
     accuracy; and the bfloat16 / float32 ratios.
Exits 2 with one line when no GPU is visible (`--allow_cpu` runs it on the
CPU anyway: how the script itself is checked on a machine without one; on
a CPU without bfloat16 instructions the bfloat16 half is ~9x slower than
the float32 half, so expect tens of minutes even with --quick).
--quick: --iterations=2 --eval_episodes=6 --steps=60 --repeats=1.
"""

from absl import app
from absl import flags
import tensorflow as tf

from benchmarks import machine
from benchmarks.evaluation_workloads import time_parts
from benchmarks.workloads import inner_loop_rates
from binaries import common
from fedmeta_tf.models import conv4
from fedmeta_tf.models import precision

_ALLOW_CPU = flags.DEFINE_bool(
    "allow_cpu", False, "Run on the CPU when no GPU is visible.")
_ITERATIONS = flags.DEFINE_integer("iterations", 10, "E per client and round.")
_EVAL_EPISODES = flags.DEFINE_integer("eval_episodes", 40,
                                      "Backdoor evaluation episodes.")
_STEPS = flags.DEFINE_integer("steps", 300,
                              "Inner steps timed in one in-graph call.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed repeats (fastest kept).")
_QUICK = flags.DEFINE_bool(
    "quick", False, "--iterations=2 --eval_episodes=6 --steps=60 --repeats=1.")
SHAPES = (((28, 28, 1), 10), ((84, 84, 3), 10))
PRECISIONS = ("float32", "mixed_bfloat16")


def placement() -> dict:
  """{what: device} of a Conv4 forward pass and its first variable."""
  model = conv4.build_conv4((28, 28, 1), 5, filters=8)
  logits = tf.function(model)(tf.zeros([2, 28, 28, 1]))
  return {"forward pass": logits.device,
          "variables": model.trainable_variables[0].device}


def measure_precision(name: str, *, iterations: int, episodes: int,
                      steps: int, repeats: int) -> dict:
  """Throughput figures of one precision (models built under its policy)."""
  figures = {}
  for shape, batch in SHAPES:
    key = f"steps_per_s_{'x'.join(map(str, shape))}"
    figures[key] = inner_loop_rates(shape, batch, "maxpool", steps, 0,
                                    repeats=max(repeats, 1),
                                    precision_name=name)[0]
  with precision.policy(name):
    figures.update(time_parts(("round", "eval"), iterations=iterations,
                              clients=3, episodes=episodes, repeats=repeats))
  return figures


def describe(name: str, figures: dict, base: dict, *, iterations: int,
             episodes: int) -> str:
  """One line: a precision's figures and, beside float32's, the ratios."""
  parts = []
  for key, value in figures.items():
    if key.startswith("steps_per_s_"):
      parts.append(f"{key[len('steps_per_s_'):]} {value:.1f} steps/s "
                   f"({value / base[key]:.2f}x)")
  parts.append(f"round (3 clients x {iterations * 50} steps) "
               f"{figures['round_s']:.2f} s ({base['round_s'] / figures['round_s']:.2f}x)")
  parts.append(f"evaluation ({episodes} episodes x 50 steps) "
               f"{figures['eval_s']:.2f} s ({base['eval_s'] / figures['eval_s']:.2f}x), "
               f"main-task accuracy {figures['eval_accuracy']:.4f}")
  return f"{name}: " + "; ".join(parts)


@common.user_errors_exit_2
def main(argv):
  del argv
  iterations, episodes, steps, repeats = (
      _ITERATIONS.value, _EVAL_EPISODES.value, _STEPS.value, _REPEATS.value)
  if _QUICK.value:
    iterations, episodes, steps, repeats = 2, 6, 60, 1
  gpus = tf.config.list_physical_devices("GPU")
  if not gpus and not _ALLOW_CPU.value:
    raise ValueError("no GPU is visible to TensorFlow (install "
                     "'tensorflow[and-cuda]==2.14.1'; BUILD.md, section 7); "
                     "--allow_cpu runs the check on the CPU")
  machine.print_machine()
  for what, device in placement().items():
    wrong = gpus and "GPU" not in device
    print(f"placement: {what} on {device}"
          f"{' -- NOT on the GPU' if wrong else ''}", flush=True)
  why = precision.why_slower_here(precision.Precision.MIXED_BFLOAT16)
  print(f"bfloat16: {'native' if why is None else 'emulated: ' + why}")
  base = None
  for name in PRECISIONS:
    figures = measure_precision(name, iterations=iterations,
                                episodes=episodes, steps=steps,
                                repeats=repeats)
    base = base or figures
    print(describe(name, figures, base, iterations=iterations,
                   episodes=episodes), flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
