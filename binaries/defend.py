r"""Experiment 3: the local matching-network defense (Algorithm 2) and ablations.

    python -m binaries.defend --from=runs/glyphs_attack_a             # 3(a)
    python -m binaries.defend --from=<run> --deltas=0.2,0.3,0.4,0.6   # 3(a)/(b)
    python -m binaries.defend --from=<run> --deltas=0.3,auto          # ours
    python -m binaries.defend --from=<run> --defense=supervised       # 3(c)
    python -m binaries.defend --from=<run> --local_meta_iterations=100  # 3(d)
    python -m binaries.defend --from=<run> --defense=protonet         # appendix
    python -m binaries.defend --flagfile=configs/glyphs_defend_cpu.cfg

Reads an Experiment 1 run directory (binaries.train_fedmeta --attack=...)
and has every benign client defend locally: Glorot mix of the attacked
model, then fine-tuning with a matching-network / ProtoNet head (or the
dense head, 3(c)). Same metrics, clients, cases and episodes as Experiment 2
(binaries.finetune). Writes under <run dir>/defend/<name>/: CSVs per delta
and case, TensorBoard events, delta<d>.png (Figs. 14-24 layout),
delta_sweep.png, the clients' defended SavedModels and summary.json
(docs/local_defense.md). A killed run re-run with the same command resumes
at the first unfinished unit; --overwrite starts over.
"""

from absl import app
from absl import flags
from absl import logging

from binaries import quiet

if __name__ == "__main__":
  # TensorFlow's harmless start-up lines hidden unless --verbosity=1: before
  # the imports below import it (binaries/quiet.py).
  quiet.quiet_start("tensorflow", "tensorflow_federated")

# pylint: disable=g-import-not-at-top,wrong-import-position
from binaries import common
from binaries import from_run_flags
from binaries import eval_formulation_flag
from binaries import precision_flag
from fedmeta_tf.defenses.local import auto_delta
from fedmeta_tf.experiments import backdoor_attack
from fedmeta_tf.experiments import defend as experiment

_DEFENSE = flags.DEFINE_enum(
    "defense", "matching", [d.value for d in experiment.Defense],
    "matching: Algorithm 2; protonet: the appendix's head; supervised: the "
    "Glorot mix with the dense head (Experiment 3(c)).")
_DELTAS = flags.DEFINE_list(
    "deltas", ["0.3"], "Weights of the global model in the Glorot mix "
    "(3(a): 0.3; sweep: 0.2,0.3,0.4,0.6), or auto: each client picks a delta "
    "per layer so that the global part's norm is --auto_delta_ratio times "
    "the noise part's (our rule, not the paper's; docs/local_defense.md).")
_AUTO_DELTA_RATIO = flags.DEFINE_float(
    "auto_delta_ratio", auto_delta.DEFAULT_RATIO, "r of --deltas=auto: "
    "delta_l = r|theta_g,l| / (|theta_G,l| + r|theta_g,l|); the default 3/7 "
    "gives 0.3 at equal norms (a model at Glorot scale). Only with auto.")
_STEPS = flags.DEFINE_integer("steps", 50, "Fine-tuning iterations.",
    allow_override=True)
_HEAD_ONLY_STEPS = flags.DEFINE_integer(
    "head_only_steps", 5, "First iterations that train alpha, beta alone "
    "(matching, protonet; refused with --defense=supervised, as are "
    "--leave_one_out and --initial_scale).")
_BATCH = flags.DEFINE_integer(
    "batch", None, "Queries per iteration (default: the run's b).")
_LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", None, "eta (default: the run's fine-tuning rate).")
_CURVE_EVERY = flags.DEFINE_integer(
    "curve_every", 5, "Record metrics every this many iterations.",
    allow_override=True)
_LOCAL_META_ITERATIONS = flags.DEFINE_integer(
    "local_meta_iterations", 0,
    "Experiment 3(d): E local Reptile iterations after the mix (100, 1000).")
_LEAVE_ONE_OUT = flags.DEFINE_boolean(
    "leave_one_out", True, "A training query may not match its own copy in "
    "the support set.")
_INITIAL_SCALE = flags.DEFINE_float(
    "initial_scale", None, "Initial beta (default: matching 10, protonet 4).")
_EXPORT = flags.DEFINE_boolean(
    "export", True, "Export each client's defended model (metric heads).")
_NAME = flags.DEFINE_string(
    "name", None, "Sub-directory under defend/ (default: from the settings).")
_PARALLELISM = common.define_parallelism_flag()
_PROGRESS = common.define_progress_flag()

# Flags of the metric heads (matching, protonet) that the dense head of
# --defense=supervised has no use for: refused there.
_METRIC_HEAD_ONLY = {
    "head_only_steps": "the dense head has no alpha, beta to train alone",
    "leave_one_out": "the dense head does not match queries against the "
                     "support set",
    "initial_scale": "the dense head has no scale beta",
}


def parse_deltas(values) -> list:
  """--deltas: numbers, or the token auto (ValueError, one line)."""
  try:
    return [auto_delta.AUTO if v.strip() == auto_delta.AUTO else float(v)
            for v in values]
  except ValueError:
    raise ValueError(f"--deltas must be numbers in [0, 1] or "
                     f"{auto_delta.AUTO}, got {','.join(values)}") from None


def check_flags_take_effect() -> None:
  """Refuses (ValueError, one line) settings the defense would ignore."""
  if auto_delta.AUTO not in [v.strip() for v in _DELTAS.value]:
    common.refuse_if_set("auto_delta_ratio",
                         f"--deltas={','.join(_DELTAS.value)}",
                         "it sets the rule of --deltas=auto; add auto to "
                         "--deltas (e.g. --deltas=0.3,auto) or leave it unset")
  if _DEFENSE.value == experiment.Defense.SUPERVISED.value:
    for name, why in _METRIC_HEAD_ONLY.items():
      common.refuse_if_set(name, f"--defense={_DEFENSE.value}",
                           f"{why}; use it with --defense=matching or "
                           "--defense=protonet, or leave it unset")


@common.user_errors_exit_2
def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}; all options are flags")
  check_flags_take_effect()
  run_dir = from_run_flags.run_dir()
  clients = from_run_flags.clients()
  deltas = parse_deltas(_DELTAS.value)
  config = experiment.DefendConfig(
      defense=_DEFENSE.value, deltas=deltas, steps=_STEPS.value,
      head_only_steps=_HEAD_ONLY_STEPS.value, batch=_BATCH.value,
      learning_rate=_LEARNING_RATE.value, curve_every=_CURVE_EVERY.value,
      episodes=from_run_flags.EPISODES.value,
      cases=from_run_flags.CASES.value, clients=clients,
      checkpoint=from_run_flags.CHECKPOINT.value,
      local_meta_iterations=_LOCAL_META_ITERATIONS.value,
      leave_one_out=_LEAVE_ONE_OUT.value, initial_scale=_INITIAL_SCALE.value,
      export=_EXPORT.value, name=_NAME.value,
      auto_delta_ratio=_AUTO_DELTA_RATIO.value,
      precision=precision_flag.checked_precision())
  common.configure_parallelism(_PARALLELISM.value, config.episodes)
  eval_formulation_flag.configure()
  common.configure_progress(_PROGRESS.value)
  backdoor_attack.load_run(run_dir)  # a clear error before writing
  output_dir = f"{run_dir}/{experiment.SUBDIR}/{config.run_name}"
  # One writer of this defense's directory (the --from run is only read;
  # other defenses of it, under other names, may run at the same time).
  common.lock_run_dir(output_dir, alternative="choose another --name")
  if from_run_flags.OVERWRITE.value:
    # Emptied here rather than by run_defend(overwrite=True), whose rmtree
    # would delete the held lock file (and the flags written next).
    common.clear_run_dir(output_dir)
  common.write_flags(output_dir, [__name__, "__main__",
                                  from_run_flags.__name__,
                                  precision_flag.__name__])
  summary = experiment.run_defend(run_dir, config, overwrite=False)
  logging.debug("done: %s", summary)
  print(f"Experiment 3 ({config.run_name}) from {run_dir}, "
        f"{config.steps} steps, {summary['wall_seconds']:.0f} s; results in "
        f"{output_dir}")
  for key, values in summary["mean_over_clients"].items():
    print(f"  {key} (mean over clients): " +
          "  ".join(f"{k} {v:.3f}" for k, v in values.items()))


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
