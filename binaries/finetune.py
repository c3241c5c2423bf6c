r"""Experiment 2: benign clients fine-tune the attacked model (Section 3.4).

    python -m binaries.finetune --from=runs/glyphs_attack_a
    python -m binaries.finetune --flagfile=configs/glyphs_finetune_cpu.cfg

Reads an Experiment 1 run directory (binaries.train_fedmeta --attack=...),
fine-tunes its attacked global model at every benign client for --steps
iterations and writes under <run dir>/finetune/: one CSV per case (keyed by
step, columns client<i>/<metric>), TensorBoard events, experiment2.png
(Figs. 8-12 layout) and summary.json.
"""

from absl import app
from absl import flags
from absl import logging

from binaries import common
from fedmeta_tf.experiments import finetune

_FROM = common.define_from_flag("Experiment 1 run directory.")
_STEPS = flags.DEFINE_integer("steps", 500, "Fine-tuning iterations.")
_CURVE_EVERY = flags.DEFINE_integer(
    "curve_every", 10, "Record metrics every this many iterations.")
_EPISODES = flags.DEFINE_integer("episodes", 40,
                                 "Episodes per client (papers: 40 or 50).")
_CASES = flags.DEFINE_list(
    "cases", None, "Cases to run (a from an (a) run; b, c from a (b)/(c) "
    "run); default: the run's case, plus (c) for a (b) run.")
_CLIENTS = flags.DEFINE_list("clients", None,
                             "Benign clients to run (default: all).")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "attacked", "pretrained | attacked | final.")


@common.user_errors_exit_2
def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}; all options are flags")
  if not _FROM.value:
    raise ValueError("--from=<Experiment 1 run directory> is required")
  try:
    clients = (None if _CLIENTS.value is None else
               [int(c) for c in _CLIENTS.value])
  except ValueError:
    raise ValueError(f"--clients must be integers, got {_CLIENTS.value}") from None
  config = finetune.FinetuneConfig(
      steps=_STEPS.value, curve_every=_CURVE_EVERY.value,
      episodes=_EPISODES.value, cases=_CASES.value, clients=clients,
      checkpoint=_CHECKPOINT.value)
  summary = finetune.run_finetune(_FROM.value, config)
  logging.info("done: %s", summary)
  print(f"Experiment 2 from {_FROM.value}, {config.steps} steps, "
        f"{summary['wall_seconds']:.0f} s; results in {_FROM.value}/finetune")
  for key, values in summary["final"].items():
    print(f"  case {key}: " + "  ".join(f"{k} {v:.3f}"
                                        for k, v in values.items()))


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
