r"""Federated Reptile meta-learning (main paper, Algorithm 1) as a TFF process.

    python -m binaries.train_fedmeta                      # embedded glyphs
    python -m binaries.train_fedmeta --flagfile=configs/omniglot_cpu.cfg

Writes under --root_output_dir/--experiment_name: flags.txt/flags.json,
metrics.csv (one row per round), TensorBoard events, summary.json and a
SavedModel of the global model (saved_model/).
"""

import functools

from absl import app
from absl import flags
from absl import logging

from binaries import data_preflight
from binaries import quiet

if __name__ == "__main__":
  # Missing data fails here, in about a second, with the download
  # instructions: before the seconds-long TensorFlow/TFF imports below.
  data_preflight.exit_if_data_missing(default_dataset="glyphs")
  # TensorFlow's harmless start-up lines hidden unless --verbosity=1
  # (binaries/quiet.py).
  quiet.quiet_start("tensorflow", "tensorflow_federated")

# pylint: disable=g-import-not-at-top,wrong-import-position
from binaries import attack_flags
from binaries import common
from binaries import eval_formulation_flag
from binaries import precision_flag
from binaries import protocol_flags
from fedmeta_tf.data import registry
from fedmeta_tf.evaluation import meta_test
from fedmeta_tf.experiments import runners
from fedmeta_tf.experiments import training
from fedmeta_tf.meta import reptile_tf

# Data and run.
_DATASET = flags.DEFINE_string(
    "dataset", "glyphs", "glyphs | omniglot | miniimagenet | celeba | archive")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Where the dataset is; default data/<dataset> "
    "(glyphs: its cache directory, default in the user's cache).")
_ROOT_OUTPUT_DIR = flags.DEFINE_string("root_output_dir", "runs",
                                       "Runs are written under this directory.")
_EXPERIMENT_NAME = flags.DEFINE_string(
    "experiment_name", None, "Sub-directory of this run; default: the "
    "--flagfile's name without .cfg, else --dataset.")
_SEED = flags.DEFINE_integer("seed", 0, "The run's one seed.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False,
    "Delete the run directory first; otherwise a killed run resumes from its "
    "last completed round and a finished one is not redone.")
_RUNTIME = flags.DEFINE_enum(
    "runtime", "tff", ["tff", "inprocess"],
    "tff: the TFF process (CPU); inprocess: the same tf.functions without TFF "
    "(uses a GPU when there is one).")
_TFF_WORKERS = common.define_tff_workers_flag()
_PARALLELISM = common.define_parallelism_flag()
_PROGRESS = common.define_progress_flag()
_CLIENT_CHUNK = flags.DEFINE_integer(
    "client_chunk", runners.DEFAULT_CLIENT_CHUNK,
    "In-process runtime: a Reptile client's outer iterations per chunk; "
    "after each, the progress bar advances, the chunk's loss goes to "
    "TensorBoard (tensorboard/client_work) and a client checkpoint is saved, "
    "so a run killed inside a long client update (the attacker's) resumes "
    "inside it. Does not change the results. The TFF runtime resumes at "
    "round boundaries only.", lower_bound=1)
# Federation (Algorithm 1).
_ROUNDS = flags.DEFINE_integer("rounds", 8, "Federated rounds.")
_NUM_CLIENTS = flags.DEFINE_integer("num_clients", 4, "M, clients.")
_CLIENTS_PER_ROUND = flags.DEFINE_integer("clients_per_round", 3,
                                          "M_r, clients sampled per round.")
_MIN_UPDATES = flags.DEFINE_integer(
    "min_updates", 3, "M_min, updates aggregated per round (first arrivals).")
_AGGREGATOR = flags.DEFINE_string(
    "aggregator", "secure_mean",
    "secure_mean | mean | server defenses that see every update (Exp. 3e): "
    "median | trimmed_mean[:beta] | krum[:f] | multi_krum[:f] | "
    "norm_clip[:norm] | flame[:noise_lambda] | foolsgold[:kappa]; defenses "
    "that keep secure aggregation: weak_dp[:clip=C,noise=z] | "
    "robust_lr[:theta=k,flip_lr=f] | crfl[:rho=R,sigma=S] "
    "(docs/server_defenses.md)")
_MAX_UPDATE_NORM = flags.DEFINE_float(
    "max_update_norm", 1e6,
    "Client updates with NaN/Inf or a larger L2 norm are excluded from the "
    "round before the secure sum (secure_mean), and counted.")
_DROPOUT_RATE = flags.DEFINE_float(
    "dropout_rate", 0.0,
    "Simulated probability that a sampled client never reports, in [0, 1). "
    "Refused with --attack (its rounds have no dropouts).")
_DROPOUT_POLICY = flags.DEFINE_enum(
    "dropout_policy", "wait", ["wait", "skip"],
    "Fewer than --min_updates reports: wait for clients not sampled, or skip "
    "the round (the model is unchanged; the metrics record it). Refused "
    "with --attack.")
_SECURE_SUM_BOUND = flags.DEFINE_float(
    "secure_sum_bound", 10.0,
    "Secure sum clips every update coordinate to [-bound, bound].")
# Reptile client work.
_WAYS = flags.DEFINE_integer("ways", 5, "N, classes per episode.")
_SHOTS = flags.DEFINE_integer("shots", 10, "K, examples per class (training).")
_EPISODES_PER_ROUND = flags.DEFINE_integer(
    "episodes_per_round", 20, "E, outer iterations per client and round.")
_META_BATCH = flags.DEFINE_integer("meta_batch", 5,
                                   "B, episodes per outer iteration.")
_INNER_STEPS = flags.DEFINE_integer("inner_steps", 10,
                                    "e, Adam steps per episode.")
_INNER_BATCH = flags.DEFINE_integer("inner_batch", 10, "b, mini-batch size.")
_INNER_LR = flags.DEFINE_float("inner_lr", 0.001, "eta, Adam learning rate.")
_OUTER_LR = flags.DEFINE_float("outer_lr", 0.5, "eps, Reptile step size.")
_META_BATCH_MODE = flags.DEFINE_enum(
    "meta_batch_mode", "sequential", ["sequential", "batched"],
    "sequential: an outer iteration's B episodes one after another, Adam's "
    "moments carried across the client's episodes (Algorithm 1 as "
    "supervised-reptile runs it); batched: the B episodes (the attacker's "
    "too) as one computation of B stacked Conv4 models, a fresh Adam per "
    "episode, float32 only (docs/results/performance.md).")
_MODEL_VARIANT = flags.DEFINE_enum("model_variant", "maxpool",
                                   ["maxpool", "strided"], "Conv4 variant.")
_FILTERS = flags.DEFINE_integer("filters", 64, "Conv4 channels.")
# Meta-test evaluation.
_EVAL_WAYS = flags.DEFINE_integer("eval_ways", 5, "N of meta-test episodes.")
_EVAL_SHOTS = flags.DEFINE_integer("eval_shots", 5, "K of meta-test episodes.")
_EVAL_QUERIES = flags.DEFINE_integer("eval_queries", 1,
                                     "Queries per class in meta-test episodes.")
_EVAL_INNER_STEPS = flags.DEFINE_integer(
    "eval_inner_steps", 50, "e (test), fine-tuning steps per episode.")
_EVAL_EPISODES = flags.DEFINE_integer(
    "eval_episodes", 100, "Meta-test episodes averaged (>= 40). With --attack "
    "every metric averages --backdoor_eval_episodes: another value is "
    "refused.")
_EVAL_EVERY = flags.DEFINE_integer(
    "eval_every", 4, "Evaluate every this many rounds (with --attack: the "
    "pre-training rounds; experiment rounds: --score_every).")


# Library field -> flag, so that errors name the flag the user typed.
_REPTILE_FLAGS = {"ways": "ways", "shots": "shots",
                  "iterations": "episodes_per_round",
                  "meta_batch": "meta_batch", "inner_steps": "inner_steps",
                  "inner_batch": "inner_batch", "inner_lr": "inner_lr",
                  "outer_lr": "outer_lr", "meta_batch_mode": "meta_batch_mode"}
_EVAL_FLAGS = {"ways": "eval_ways", "shots": "eval_shots",
               "queries": "eval_queries", "steps": "eval_inner_steps",
               "batch": "inner_batch", "learning_rate": "inner_lr",
               "episodes": "eval_episodes"}


def _named(build, field_to_flag):
  """Calls `build()`; a ValueError about a field is re-raised naming its flag."""
  try:
    return build()
  except ValueError as e:
    message = str(e)
    field = message.split(" ", 1)[0]
    if field in field_to_flag:
      raise ValueError(f"--{field_to_flag[field]}: {message}") from None
    raise


def config_from_flags() -> training.TrainingConfig:
  reptile = _named(lambda: reptile_tf.ReptileConfig(
      ways=_WAYS.value, shots=_SHOTS.value,
      iterations=_EPISODES_PER_ROUND.value, meta_batch=_META_BATCH.value,
      inner_steps=_INNER_STEPS.value, inner_batch=_INNER_BATCH.value,
      inner_lr=_INNER_LR.value, outer_lr=_OUTER_LR.value,
      meta_batch_mode=_META_BATCH_MODE.value), _REPTILE_FLAGS)
  evaluation = _named(lambda: meta_test.EvalConfig(
      ways=_EVAL_WAYS.value, shots=_EVAL_SHOTS.value,
      queries=_EVAL_QUERIES.value, steps=_EVAL_INNER_STEPS.value,
      batch=_INNER_BATCH.value, learning_rate=_INNER_LR.value,
      episodes=_EVAL_EPISODES.value), _EVAL_FLAGS)
  return training.TrainingConfig(
      dataset=_DATASET.value, seed=_SEED.value,
      data_dir=data_preflight.resolve_data_dir(_DATASET.value, _DATA_DIR.value),
      rounds=_ROUNDS.value, num_clients=_NUM_CLIENTS.value,
      clients_per_round=_CLIENTS_PER_ROUND.value,
      min_updates=_MIN_UPDATES.value, reptile=reptile, evaluation=evaluation,
      eval_every=_EVAL_EVERY.value,
      runtime=training.Runtime(_RUNTIME.value),
      aggregator=_AGGREGATOR.value, secure_sum_bound=_SECURE_SUM_BOUND.value,
      max_update_norm=_MAX_UPDATE_NORM.value,
      dropout_rate=_DROPOUT_RATE.value, dropout_policy=_DROPOUT_POLICY.value,
      model_variant=_MODEL_VARIANT.value, filters=_FILTERS.value,
      protocol=protocol_flags.protocol_from_flags(_DATASET.value))


def check_flags_take_effect() -> None:
  """Refuses (ValueError, one line) settings the run would ignore."""
  attack_flags.check_attack_flags(_DATASET.value)
  if (_META_BATCH_MODE.value == "batched"
      and precision_flag.PRECISION.value != "float32"):
    raise ValueError(
        f"--meta_batch_mode=batched trains in float32 only, not "
        f"--precision={precision_flag.PRECISION.value}; use --precision="
        "float32 or --meta_batch_mode=sequential")
  if _RUNTIME.value == "tff":
    common.refuse_if_set(
        "client_chunk", "--runtime=tff",
        "the TFF runtime runs a client's work as one call and resumes at "
        "round boundaries; use --runtime=inprocess to resume inside it")
  attack = flags.FLAGS["attack"].value
  if attack == "none":
    return
  setting = f"--attack={attack}"
  no_dropouts = ("the attack experiment's rounds select their clients "
                 "without dropouts; leave it unset, or use --attack=none")
  common.refuse_if_set("dropout_rate", setting, no_dropouts)
  common.refuse_if_set("dropout_policy", setting, no_dropouts)
  episodes = flags.FLAGS["backdoor_eval_episodes"].value
  if _EVAL_EPISODES.value != episodes:
    common.refuse_if_set(
        "eval_episodes", setting,
        "every metric of the attack experiment (meta-test accuracy included) "
        f"averages --backdoor_eval_episodes={episodes} episodes; set that "
        "flag instead, or --eval_episodes to the same value")


@common.user_errors_exit_2
def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}; all options are flags")
  check_flags_take_effect()
  common.configure_progress(_PROGRESS.value)
  config = config_from_flags()
  common.configure_parallelism(_PARALLELISM.value, config.clients_per_round)
  eval_formulation_flag.configure()
  # Missing data fails now, with the download instructions, not after TFF.
  registry.check_data_available(config.dataset, config.data_dir)
  # Experiment 1 or None.
  attack = attack_flags.attack_config_from_flags(config.dataset)
  # Loading the split checks N, K, the examples per class and the attack's
  # classes against the data: every such error comes before anything is
  # written.
  if attack is None:
    training.load_split(config)
  else:
    from fedmeta_tf.experiments import backdoor_attack  # pylint: disable=g-import-not-at-top
    backdoor_attack.load_attack_split(config, attack.backdoor,
                                      attack.schedule.attacker_ids)
  tff_workers = common.tff_workers_from_flag(_TFF_WORKERS.value,
                                             config.runtime)
  if attack is not None:
    backdoor_attack.check_pretrained_from(config, attack)
  name = common.resolve_experiment_name(_EXPERIMENT_NAME, config.dataset)
  output_dir = f"{_ROOT_OUTPUT_DIR.value}/{name}"
  common.lock_run_dir(output_dir)  # One writer; before --overwrite deletes.
  if common.prepare_run_dir(output_dir,
                            [__name__, "__main__", attack_flags.__name__,
                             protocol_flags.__name__, precision_flag.__name__],
                            overwrite=_OVERWRITE.value):
    print(f"{output_dir} already holds this finished run (summary.json); "
          "pass --overwrite to run it again")
    return
  run = functools.partial(training.run_training,
                          client_chunk=_CLIENT_CHUNK.value)
  if attack is not None:
    run = functools.partial(backdoor_attack.run_attack_experiment,
                            attack=attack, client_chunk=_CLIENT_CHUNK.value)
  with precision_flag.precision_scope():
    if config.runtime is training.Runtime.TFF:
      from fedmeta_tf.tff_process import contexts  # pylint: disable=g-import-not-at-top
      with contexts.tff_runtime(workers=tff_workers):
        summary = run(config, output_dir=output_dir)
    else:
      summary = run(config, output_dir=output_dir)
  logging.debug("done: %s -> %s", summary, output_dir)
  if attack is not None:
    print(backdoor_attack.describe_summary(summary, output_dir))
    return
  print(f"final meta-test accuracy {summary['final_meta_test_accuracy']:.4f} "
        f"after {summary['rounds']} rounds in {summary['wall_seconds']:.0f} s; "
        f"results in {output_dir}")


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
