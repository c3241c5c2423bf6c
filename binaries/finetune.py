r"""Experiment 2: benign clients fine-tune the attacked model (Section 3.4).

    python -m binaries.finetune --from=runs/glyphs_attack_a
    python -m binaries.finetune --flagfile=configs/glyphs_finetune_cpu.cfg

Reads an Experiment 1 run directory (binaries.train_fedmeta --attack=...),
fine-tunes its attacked global model at every benign client for --steps
iterations and writes under <run dir>/finetune/: one CSV per case (keyed by
step, columns client<i>/<metric>), TensorBoard events, experiment2.png
(Figs. 8-12 layout) and summary.json. A killed run re-run with the same
command resumes at the first unfinished (case, client); --overwrite starts
over.
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
from fedmeta_tf.experiments import finetune

_STEPS = flags.DEFINE_integer("steps", 500, "Fine-tuning iterations.",
                             allow_override=True)
_CURVE_EVERY = flags.DEFINE_integer(
    "curve_every", 10, "Record metrics every this many iterations.",
    allow_override=True)
_FINETUNE_SHOTS = flags.DEFINE_integer(
    "finetune_shots", None, "K, support examples per class in the fine-tuning "
    "episodes (the main paper's CelebA Fig. 11: 15); default: the run's "
    "--eval_shots. Another K writes <run>/finetune_k<K>/.")
_PARALLELISM = common.define_parallelism_flag()
_PROGRESS = common.define_progress_flag()


@common.user_errors_exit_2
def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}; all options are flags")
  run_dir = from_run_flags.run_dir()
  config = finetune.FinetuneConfig(
      steps=_STEPS.value, curve_every=_CURVE_EVERY.value,
      episodes=from_run_flags.EPISODES.value,
      cases=from_run_flags.CASES.value, clients=from_run_flags.clients(),
      checkpoint=from_run_flags.CHECKPOINT.value, shots=_FINETUNE_SHOTS.value,
      precision=precision_flag.checked_precision())
  common.configure_parallelism(_PARALLELISM.value, config.episodes)
  eval_formulation_flag.configure()
  common.configure_progress(_PROGRESS.value)
  from fedmeta_tf.experiments import backdoor_attack  # pylint: disable=g-import-not-at-top
  backdoor_attack.load_run(run_dir)  # a clear error before writing
  # One writer of <run>/finetune (the --from run itself is only read).
  common.lock_run_dir(f"{run_dir}/{config.subdir}", alternative=None)
  common.write_flags(f"{run_dir}/{config.subdir}",
                     [__name__, "__main__", from_run_flags.__name__,
                      precision_flag.__name__])
  summary = finetune.run_finetune(run_dir, config,
                                  overwrite=from_run_flags.OVERWRITE.value)
  logging.debug("done: %s", summary)
  print(f"Experiment 2 from {run_dir}, {config.steps} steps, "
        f"{summary['wall_seconds']:.0f} s; results in {run_dir}/{config.subdir}")
  for key, values in summary["final"].items():
    print(f"  case {key}: " + "  ".join(f"{k} {v:.3f}"
                                        for k, v in values.items()))


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
