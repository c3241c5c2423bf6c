r"""The evaluation loop as the binaries run it, per formulation and precision
(issue #20, item 2: batched evaluation, measured with both streams in use).

    .venv/bin/python -m benchmarks.evaluation_loop [--episodes=40]
        [--steps=50] [--repeats=2] [--parallelism=0]

Times one Experiment 1 evaluation (`backdoor.BackdoorEvaluator`, main paper
Section 3.1: per episode a main-task episode holding the target class and a
meta-test episode, 5-way 5-shot, `--steps` Adam steps, scored after the last
one; random 28x28 images, maxpool Conv4) on the process's parallel streams
(`--parallelism`, 0: automatic, one per core, as the binaries run), for each
`--eval_formulation` choice (one episode at a time; stacks of up to
`batched_eval.MAX_STACK` episodes: grouped, loop, patches) in float32 and
mixed_bfloat16. Settings alternate repeat after repeat, the fastest of each
kept (`workloads.interleaved_rates`). Prints the machine, seconds per evaluation, fine-tuning
episode-steps/s and the ratio to sequential float32.
"""

import time

from absl import app
from absl import flags
import numpy as np

from benchmarks import evaluation_workloads
from benchmarks import machine
from benchmarks import workloads
from binaries import common
from fedmeta_tf.evaluation import backdoor
from fedmeta_tf.evaluation import batched_eval
from fedmeta_tf.evaluation import meta_test
from fedmeta_tf.models import conv4
from fedmeta_tf.models import precision
from fedmeta_tf import parallel

_EPISODES = flags.DEFINE_integer("episodes", 40, "Evaluation episodes.")
_STEPS = flags.DEFINE_integer("steps", 50, "Fine-tuning steps per episode.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timings per setting (best).")
_PARALLELISM = flags.DEFINE_integer(
    "parallelism", 0, "Streams (0: one per core, as the binaries' default).")
# Every --eval_formulation choice but auto (which picks one of these).
FORMULATIONS = tuple(c for c in batched_eval.CHOICES if c != batched_eval.AUTO)
PRECISIONS = ("float32", "mixed_bfloat16")


def _timer(choice: str, precision_name: str, config, data, work: int):
  """A warmed-up evaluator of `choice` in `precision_name`, as a
  `workloads.interleaved_rates` timer: repeat -> `work` / seconds."""
  batched_eval.configure(choice)
  with precision.policy(precision_name):
    evaluator = backdoor.BackdoorEvaluator(
        lambda: conv4.build_conv4((28, 28, 1), 5, seed=0), config=config,
        data=data, seed=0)
  weights = [v.numpy() for v in evaluator.model.trainable_variables]
  evaluator(weights)  # tracing

  def rate(repeat: int) -> float:
    del repeat
    start = time.perf_counter()
    evaluator(weights)
    return work / (time.perf_counter() - start)

  return rate


@common.user_errors_exit_2
def main(argv):
  del argv
  episodes, steps, repeats = _EPISODES.value, _STEPS.value, _REPEATS.value
  if episodes < 1 or steps < 1 or repeats < 1:
    raise ValueError("--episodes, --steps and --repeats must be >= 1")
  streams = common.configure_parallelism(_PARALLELISM.value, episodes)
  machine.print_machine()
  config = backdoor.BackdoorEvalConfig(
      episode=meta_test.EvalConfig(episodes=episodes, steps=steps))
  data = evaluation_workloads.eval_data(np.random.default_rng(0))
  work = 2 * episodes * steps  # two fine-tuned episodes per evaluation episode
  rates = workloads.interleaved_rates(
      {(f, p): _timer(f, p, config, data, work)
       for p in PRECISIONS for f in FORMULATIONS}, repeats)
  baseline = rates[("sequential", "float32")]
  print(f"evaluation: {episodes} episodes x 2 tasks x {steps} steps, "
        f"{streams} streams ({parallel.available_cores()} cores)")
  for (formulation, precision_name), rate in rates.items():
    print(f"  {formulation:10s} {precision_name:15s} {work / rate:7.2f} s  "
          f"{rate:7.1f} episode-steps/s  "
          f"{rate / baseline:.2f}x sequential float32", flush=True)


if __name__ == "__main__":
  app.run(main)
