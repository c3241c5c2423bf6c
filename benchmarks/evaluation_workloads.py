"""What `benchmarks.parallel` and `benchmarks.gpu_check` time: a federated
round, a backdoor evaluation and a defended evaluation in this process.

Flag-free, so that several benchmark scripts (and the tests) can import it.
"""

import numpy as np

from benchmarks.workloads import fastest_seconds
from benchmarks.workloads import round_seconds
from benchmarks.workloads import round_setup
from fedmeta_tf.defenses.local import secure_fine_tuning as sft
from fedmeta_tf.evaluation import backdoor
from fedmeta_tf.evaluation import defended as defense_eval
from fedmeta_tf.evaluation import meta_test
from fedmeta_tf.models import conv4
from fedmeta_tf.runtime import inprocess
from fedmeta_tf import parallel


def eval_data(rng):
  """Random-image `backdoor.eval_data` of the shapes an Omniglot run has."""
  def images(*shape):
    return rng.integers(0, 256, (*shape, 28, 28, 1), dtype=np.uint8)
  return backdoor.eval_data(
      main_support=images(50, 15), main_queries=images(50, 5),
      target_support=images(10), target_queries=images(10),
      backdoor_pool=images(4, 10), attack_train=images(20),
      attack_val=images(20), meta_test_pool=images(50, 15))


def measure(value: int, parts, iterations: int, clients: int, episodes: int,
            repeats: int) -> dict:
  """The seconds of `parts` in this process at --parallelism=value."""
  figures = {"streams": parallel.configure(value, clients)}
  figures.update(time_parts(parts, iterations=iterations, clients=clients,
                            episodes=episodes, repeats=repeats))
  return figures


def time_parts(parts, *, iterations: int, clients: int, episodes: int,
               repeats: int) -> dict:
  """Seconds (fastest of `repeats`, after a warm-up) and main-task accuracy
  of `parts` ("round", "eval", "defend"), with the models built now (under
  the current Keras dtype policy)."""
  figures = {}
  if "round" in parts:
    job, _ = round_setup(iterations, clients)
    figures["round_s"] = round_seconds(
        lambda: inprocess.InProcessRunner(**job), list(range(clients)),
        repeats)
  config = backdoor.BackdoorEvalConfig(
      episode=meta_test.EvalConfig(episodes=episodes))
  data = eval_data(np.random.default_rng(0))
  if "eval" in parts:
    model_fn = lambda: conv4.build_conv4((28, 28, 1), 5, seed=0)
    evaluator = backdoor.BackdoorEvaluator(model_fn, config=config, data=data,
                                           seed=0)
    weights = [v.numpy() for v in evaluator.model.trainable_variables]
    result = evaluator(weights)  # warm-up (tracing)
    figures["eval_s"] = fastest_seconds(lambda: evaluator(weights), repeats)
    figures["eval_accuracy"] = result["main_task_accuracy"]
  if "defend" in parts:
    defense = defense_eval.DefenseEvaluator(
        image_shape=(28, 28, 1), config=config,
        defense=sft.DefenseConfig(steps=config.episode.steps))
    features = [v.numpy() for v in defense.learner.feature_variables]
    curves = lambda: defense.curves(features, data=data, seed=0)
    figures["defend_accuracy"] = float(curves()["main_task_accuracy"][-1])
    figures["defend_s"] = fastest_seconds(curves, repeats)
  return figures
