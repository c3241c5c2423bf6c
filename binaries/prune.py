r"""The federated pruning defense (pruning paper, Section IV) on a trained run.

    python -m binaries.prune --from=runs/supervised_omniglot_pixel
    python -m binaries.prune --from=<run> --vote=majority --fine_tune_rounds=5
    python -m binaries.prune --flagfile=configs/mnist_table2_ranking_prune.cfg

Reads a `binaries.train_supervised` run directory, or a `binaries.train_fedmeta
--attack=...` run directory (the meta-learning Conv4: conv4 is pruned; test
accuracy = meta-test accuracy, attack success = backdoor accuracy on unseen
keyed images, validation = main-task accuracy); writes under
<run>/<--output_subdir>: stages.csv and stages.md (test accuracy and attack
success after training, pruning, adjusting extreme weights and optional
fine-tuning, as Tables I-VI), pruning_curve.csv and delta_curve.csv, and
pruning.png (accuracy / attack success vs channels pruned and vs Delta,
Figs 4-5), plus flags and summary.json. A sweep of `train_supervised` runs
(label pairs, key patterns) is defended run by run (results in
<run>/<member>/<--output_subdir>), and <run>/<--output_subdir>/table.md and
table.csv hold one row per run in the layout of the paper's table
--paper_table, the paper's figures beside ours.
"""

import os

from absl import app
from absl import flags
from absl import logging
import numpy as np

from binaries import quiet

if __name__ == "__main__":
  # TensorFlow's harmless start-up lines hidden unless --verbosity=1: before
  # the imports below import it (binaries/quiet.py).
  quiet.quiet_start("tensorflow", "tensorflow_federated")

# pylint: disable=g-import-not-at-top,wrong-import-position
from binaries import common
from fedmeta_tf.defenses.pruning import defense
from fedmeta_tf.defenses.pruning import paper_tables
from fedmeta_tf.defenses.pruning import report
from fedmeta_tf.defenses.pruning import voting
from fedmeta_tf.experiments import prune_meta as meta
from fedmeta_tf.experiments import prune_supervised as supervised
from fedmeta_tf.experiments import sweeps
from fedmeta_tf.reporting import release
from fedmeta_tf.supervised import training

_FROM = common.define_from_flag("Run directory to defend.")
_OUTPUT_SUBDIR = flags.DEFINE_string("output_subdir", "pruning",
                                     "Results go to <run>/<this>.")
_VOTE = flags.DEFINE_enum_class("vote", voting.Vote.RANKING, voting.Vote,
                                "ranking (mean rank) | majority (0/1 masks).")
_PRUNING_RATE = flags.DEFINE_float(
    "pruning_rate", 0.5, "p of the majority vote's client masks (refused "
    "with --vote=ranking).")
_ACCURACY_DROP = flags.DEFINE_float(
    "accuracy_drop", 0.01,
    "Stop pruning before accuracy drops more than this (and decreasing Delta, "
    "unless --delta_accuracy_drop is given).")
_DELTA_ACCURACY_DROP = flags.DEFINE_float(
    "delta_accuracy_drop", None,
    "Stop decreasing Delta before accuracy drops more than this below the "
    "pruned model's (default: --accuracy_drop; 1: never stop, apply "
    "--delta_min, e.g. Table I's fixed Delta = 3).")
_PRUNE_STEP = flags.DEFINE_integer("prune_step", 1,
                                   "Channels per step of the pruning curve.")
_DELTA_MAX = flags.DEFINE_float("delta_max", 5.0, "First Delta tried.")
_DELTA_MIN = flags.DEFINE_float("delta_min", 0.5, "Last Delta tried.")
_DELTA_STEP = flags.DEFINE_float("delta_step", 0.25, "Delta decrement.")
_STOP_METRIC = flags.DEFINE_enum(
    "stop_metric", "val_accuracy", ["val_accuracy", "client_accuracy"],
    "val_accuracy: the server's validation set; client_accuracy: the mean of "
    "the accuracies clients report on their own data.")
_STOP_RULE = flags.DEFINE_enum(
    "stop_rule", "reference", list(defense.STOP_RULES),
    "consecutive: stop before the first drop of more than --accuracy_drop "
    "between two successive testing points (the paper, Section V-B); "
    "reference: before the accuracy falls --accuracy_drop below the stage's "
    "starting model.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "final", "Meta-learning runs: checkpoints/<this>.npz.",
    allow_override=True)  # as binaries.from_run_flags' --checkpoint
_EVAL_EPISODES = flags.DEFINE_integer(
    "eval_episodes", 10, "Meta-learning runs: episodes per evaluation.")
_FINE_TUNE_ROUNDS = flags.DEFINE_integer(
    "fine_tune_rounds", 0, "Federated fine-tuning rounds after pruning.")
_PRUNE_NEURONS = flags.DEFINE_boolean(
    "prune_neurons", True, "False: skip the pruning stage, adjust extreme "
    "weights of the trained model alone (Table III).")
_PAPER_TABLE = flags.DEFINE_enum(
    "paper_table", None, list(paper_tables.TABLES),
    "A sweep's table puts this table of the paper beside ours (pruning "
    "paper, Section V).")


def config_from_flags() -> defense.PruningConfig:
  if _VOTE.value is voting.Vote.RANKING:
    common.refuse_if_set(
        "pruning_rate", "--vote=ranking",
        "it is the share of channels each client's majority-vote mask "
        "prunes; use --vote=majority, or leave it unset")
  if not 0 < _DELTA_MIN.value <= _DELTA_MAX.value or _DELTA_STEP.value <= 0:
    raise ValueError("need 0 < delta_min <= delta_max and delta_step > 0, got "
                     f"{_DELTA_MIN.value}, {_DELTA_MAX.value}, "
                     f"{_DELTA_STEP.value}")
  deltas = np.arange(_DELTA_MAX.value, _DELTA_MIN.value - 1e-9,
                     -_DELTA_STEP.value)
  return defense.PruningConfig(
      vote=_VOTE.value, pruning_rate=_PRUNING_RATE.value,
      accuracy_drop=_ACCURACY_DROP.value,
      delta_accuracy_drop=_DELTA_ACCURACY_DROP.value,
      prune_step=_PRUNE_STEP.value,
      deltas=tuple(float(d) for d in np.round(deltas, 6)),
      stop_metric=_STOP_METRIC.value, stop_rule=_STOP_RULE.value,
      fine_tune_rounds=_FINE_TUNE_ROUNDS.value,
      prune_neurons=_PRUNE_NEURONS.value)


_PROGRESS = common.define_progress_flag()


@common.user_errors_exit_2
def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}; all options are flags")
  if not _FROM.value:
    raise ValueError("--from=<run directory> is required")
  config = config_from_flags()
  common.configure_progress(_PROGRESS.value)
  if not os.path.isdir(_FROM.value):
    raise ValueError(f"run directory {_FROM.value!r} does not exist")
  is_meta = os.path.isfile(os.path.join(_FROM.value, meta.EXPERIMENT_JSON))
  sweep = None if is_meta else sweeps.read_sweep(_FROM.value)
  if sweep is None:
    common.refuse_if_set("paper_table", "a single run",
                         "it lays out the rows of a sweep (train_supervised "
                         "--label_pairs or --key_pixels)")
  output_dir = os.path.join(_FROM.value, _OUTPUT_SUBDIR.value)
  # One writer of the results directory (the --from run is only read).
  common.lock_run_dir(output_dir,
                      alternative="choose another --output_subdir")
  common.write_flags(output_dir, [__name__, "__main__"])
  if is_meta:
    result = meta.defend_run(_FROM.value, config,
                             checkpoint=_CHECKPOINT.value,
                             eval_episodes=_EVAL_EPISODES.value)
    _write(result, output_dir, f"meta-learning run {_FROM.value}, "
           f"{config.vote.value} vote")
    return
  if sweep is None:
    result, title = _defend_supervised(*supervised.load_run(_FROM.value),
                                       config)
    _write(result, output_dir, title)
    return
  paper = paper_tables.get(_PAPER_TABLE.value) if _PAPER_TABLE.value else None
  rows, data = [], None
  for member in sweep:
    member_dir = os.path.join(_FROM.value, member.name)
    # The runs of a sweep trained on one task: read it once.
    federation, weights = supervised.load_run(member_dir, data)
    data = federation.data
    result, title = _defend_supervised(federation, weights, config)
    _write(result, os.path.join(member_dir, _OUTPUT_SUBDIR.value),
           f"{member.label()}: {title}")
    rows.append((member, result.stages))
  path = report.write_sweep_table(rows, output_dir,
                                  f"{_FROM.value} ({len(sweep)} runs): "
                                  f"{title}", paper)
  with open(path) as f:
    print(f.read())
  print(f"table in {path}")


def _defend_supervised(federation, weights, config: defense.PruningConfig):
  """(DefenseResult, title) of one supervised run."""
  if federation.config.runtime == "tff" and config.fine_tune_rounds:
    from fedmeta_tf.tff_process import contexts  # pylint: disable=g-import-not-at-top
    with contexts.tff_runtime():
      result = supervised.defend(federation, weights, config)
  else:
    result = supervised.defend(federation, weights, config)
  c = federation.config
  title = (f"{c.dataset}, {c.num_clients} clients, {c.labels_per_client}-label"
           f", {c.attack.value} attack x{len(federation.attackers)}, "
           f"alpha={c.boosting_factor:g}, {config.vote.value} vote")
  return result, title


def _write(result, output_dir, title):
  paths = report.write_results(result, output_dir, title)
  training.save_weights(os.path.join(output_dir, "weights.npz"),
                        result.weights)
  release.write_json_atomically(os.path.join(output_dir, "summary.json"), {
      "stages": result.stages, "pruned_channels": result.pruned.tolist(),
      "pruning_order": result.order.tolist()})
  print(report.stages_markdown(result.stages))
  logging.info("results: %s", paths)
  print(f"results in {output_dir}")


if __name__ == "__main__":
  flags.mark_flag_as_required("from")
  app.run(main, flags_parser=common.parse_flags)
