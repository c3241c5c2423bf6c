r"""In-process parallelism: clients and evaluation episodes side by side.

    .venv/bin/python -m benchmarks.parallel [--quick] [--parallelism=1,0]
        [--parts=round,eval,defend] [--clients=3] [--iterations=10]
        [--eval_episodes=20] [--repeats=2]

For each --parallelism value (0: automatic, what the binaries use by
default; 1: one item at a time with TensorFlow's default threads, the
driver before `fedmeta_tf/parallel.py`), in a fresh subprocess (TensorFlow
fixes its thread pools at start-up):
  - seconds per federated round, in-process driver, --clients clients of
    Conv4 28x28 (64 filters) Reptile with E = --iterations (x 5 episodes x
    10 steps), the round of `benchmarks.throughput`;
  - seconds per backdoor evaluation (`BackdoorEvaluator`, 5-way 5-shot,
    50 fine-tuning steps, --eval_episodes episodes), the per-round cost of
    Experiment 1;
  - seconds per defended evaluation (`DefenseEvaluator`: Algorithm 2's
    matching head, 50 steps, the same episodes), one (client, delta, case)
    unit of Experiment 3 (`binaries.defend`).
Each is the fastest of --repeats after a warm-up call. Prints them, the
speed-ups over the first value, and the results to compare (equal by
construction: tests/runtime/parallel_test.py).
--quick: --iterations=2 --eval_episodes=6 --repeats=1.
"""

import json

from absl import app
from absl import flags

from benchmarks import machine
from benchmarks.evaluation_workloads import measure
from benchmarks.workloads import run_json_child
from binaries import common

_PARALLELISM = flags.DEFINE_list(
    "parallelism", ["1", "0"],
    "Values to compare (0: automatic); the first is the baseline.")
_CLIENTS = flags.DEFINE_integer("clients", 3, "Clients per round.")
_ITERATIONS = flags.DEFINE_integer("iterations", 10, "E per client and round.")
_EVAL_EPISODES = flags.DEFINE_integer("eval_episodes", 20,
                                      "Backdoor evaluation episodes.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed repeats (fastest kept).")
_QUICK = flags.DEFINE_bool("quick", False,
                           "--iterations=2 --eval_episodes=6 --repeats=1.")
PARTS = ("round", "eval", "defend")
_PARTS = flags.DEFINE_list("parts", list(PARTS),
                           "What to time: round, eval, defend.")
_CHILD = flags.DEFINE_integer(
    "child", None, "Internal: measure with this --parallelism, print JSON.")


def _run_child(value: int, parts, iterations, clients, episodes,
               repeats) -> dict:
  return run_json_child(
      "benchmarks.parallel",
      [f"--child={value}", f"--parts={','.join(parts)}",
       f"--iterations={iterations}", f"--clients={clients}",
       f"--eval_episodes={episodes}", f"--repeats={repeats}"],
      f"parallelism {value} child")


def _describe(figures: dict, base: dict, *, clients: int, iterations: int,
              episodes: int) -> str:
  """One line: each measured part's seconds, speed-up over `base` and, for
  the evaluations, the accuracy to compare with the baseline's."""
  out = []
  if "round_s" in figures:
    out.append(f"round ({clients} clients x {iterations * 50} steps) "
               f"{figures['round_s']:.2f} s, speed-up "
               f"{base['round_s'] / figures['round_s']:.2f}x")
  for part, name in (("eval", "backdoor evaluation"),
                     ("defend", "defended evaluation")):
    if f"{part}_s" in figures:
      out.append(
          f"{name} ({episodes} episodes) {figures[f'{part}_s']:.2f} s, "
          f"speed-up {base[f'{part}_s'] / figures[f'{part}_s']:.2f}x, "
          f"main-task accuracy {figures[f'{part}_accuracy']:.4f} (baseline "
          f"{base[f'{part}_accuracy']:.4f})")
  return "; ".join(out)


@common.user_errors_exit_2
def main(argv):
  del argv
  iterations, episodes, repeats = (_ITERATIONS.value, _EVAL_EPISODES.value,
                                   _REPEATS.value)
  if _QUICK.value:
    iterations, episodes, repeats = 2, 6, 1
  parts = _PARTS.value
  if not parts or set(parts) - set(PARTS):
    raise ValueError(f"--parts must be a non-empty list of {', '.join(PARTS)}"
                     f", got {','.join(parts)}")
  if _CHILD.value is not None:
    print(json.dumps(measure(_CHILD.value, parts, iterations, _CLIENTS.value,
                             episodes, repeats)))
    return
  try:
    values = [int(v) for v in _PARALLELISM.value]
  except ValueError:
    raise ValueError(f"--parallelism must be integers >= 0, got "
                     f"{_PARALLELISM.value}") from None
  if not values or min(values) < 0:
    raise ValueError(f"--parallelism must be integers >= 0, got {values}")
  machine.print_machine()
  base = None
  for value in values:
    figures = _run_child(value, parts, iterations, _CLIENTS.value, episodes,
                         repeats)
    base = base or figures
    print(f"--parallelism={value} ({figures['streams']} streams): " +
          _describe(figures, base, clients=_CLIENTS.value,
                    iterations=iterations, episodes=episodes), flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
