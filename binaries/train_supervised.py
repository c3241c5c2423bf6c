r"""Supervised federated learning (FedAvg) with backdoor attackers: the
pruning paper's setting (Section III), on the same round runners as
federated meta-learning.

    python -m binaries.train_supervised --flagfile=configs/mnist_table2_cpu.cfg
    python -m binaries.train_supervised \
        --flagfile=configs/omniglot_supervised_prune_cpu.cfg

Writes under --root_output_dir/--experiment_name: flags.txt/flags.json,
config.json, metrics.csv (test accuracy and attack success per round) and
TensorBoard events, weights.npz and summary.json. With several
--label_pairs or --key_pixels it is a sweep: one such run per pair and
pattern in a sub-directory, listed in sweep.json (the rows of the paper's
tables). Then `python -m binaries.prune --from=<that dir>` applies the
pruning defense (to every run of a sweep).
"""

import contextlib

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
from binaries import data_preflight
from fedmeta_tf.data import supervised_datasets
from fedmeta_tf.experiments import fedavg
from fedmeta_tf.experiments import sweeps
from fedmeta_tf.supervised import training

_DATASET = flags.DEFINE_enum(
    "dataset", "glyphs", training.DATASETS,
    "mnist | fashion_mnist | cifar10: the paper's own data (official files "
    "or a TFDS folder, docs/datasets.md); glyphs | omniglot | miniimagenet |"
    " celeba | archive: a class pool, --num_labels of its classes as labels "
    "with augmented images.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Where the dataset is; default data/<dataset> (glyphs: "
    "its cache directory, default in the user's cache).")
_ROOT_OUTPUT_DIR = flags.DEFINE_string("root_output_dir", "runs",
                                       "Runs are written under this directory.")
_EXPERIMENT_NAME = flags.DEFINE_string(
    "experiment_name", None, "Sub-directory of this run; default: the "
    "--flagfile's name without .cfg, else supervised_<dataset>.")
_SEED = flags.DEFINE_integer("seed", 0, "The run's one seed.")
_RUNTIME = flags.DEFINE_enum("runtime", "inprocess", ["tff", "inprocess"],
                             "Round driver.")
_NUM_LABELS = flags.DEFINE_integer(
    "num_labels", 10, "Labels of a class-pool task (MNIST, Fashion-MNIST and "
    "CIFAR-10 have 10).")
_TRAIN_COPIES = flags.DEFINE_integer(
    "train_copies", 40,
    "Class-pool tasks: augmented variants of each training image.")
_TEST_COPIES = flags.DEFINE_integer(
    "test_copies", 25,
    "Class-pool tasks: augmented variants of each validation/test image.")
_VAL_SIZE = flags.DEFINE_integer(
    "val_size", 1000, "mnist | fashion_mnist | cifar10 with their training "
    "set: the server's validation images, carved from the official test set "
    "(only the test set present: 10 % of it, docs/datasets.md).")
_NUM_CLIENTS = flags.DEFINE_integer("num_clients", 10, "N, clients.")
_LABELS_PER_CLIENT = flags.DEFINE_integer("labels_per_client", 3,
                                          "K of the K-label non-IID split.")
_CLIENTS_PER_ROUND = flags.DEFINE_integer(
    "clients_per_round", 10, "Clients per round (all by default, as the paper).")
_ROUNDS = flags.DEFINE_integer("rounds", 30, "Federated rounds.")
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Local SGD epochs per round.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Local mini-batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.05, "Local SGD rate.")
_FILTERS = flags.DEFINE_list(
    "filters", ["16", "32", "64"], "Channels of the conv layers (the "
    "paper's MNIST model: 20,50; Table III's concise one: 8,16).")
_HIDDEN = flags.DEFINE_list("hidden", ["128"],
                            "Units of the hidden dense layers.")
_KERNEL_SIZE = flags.DEFINE_integer("kernel_size", 3,
                                    "Side of every conv kernel.")
_CONV_PADDING = flags.DEFINE_enum("conv_padding", "same", ["same", "valid"],
                                  "Padding of every conv layer.")
_HEAD = flags.DEFINE_enum(
    "head", "flatten", ["flatten", "gap", "gmp"],
    "After the last conv layer: max-pool + flatten, global average pool or "
    "global max pool.")
_AGGREGATOR = flags.DEFINE_string(
    "aggregator", "mean",
    "mean | secure_mean | median | trimmed_mean[:beta] | krum[:f] | "
    "multi_krum[:f] | norm_clip[:norm]")
_ATTACK = flags.DEFINE_enum_class(
    "attack", training.Attack.PIXEL, training.Attack,
    "none | pixel (pixel-pattern backdoor) | dba (key split among attackers).")
_NUM_ATTACKERS = flags.DEFINE_integer("num_attackers", 1, "Attackers.")
_SOURCE_LABEL = flags.DEFINE_integer("source_label", 9,
                                     "Victim label whose keyed images flip.")
_TARGET_LABEL = flags.DEFINE_integer("target_label", 1, "Backdoor target.")
_BOOSTING_FACTOR = flags.DEFINE_float(
    "boosting_factor", 3.0, "The factor the attackers multiply their update "
    "by: model replacement's alpha (pruning paper §III-D; 1: none).")
_ATTACK_START_ROUND = flags.DEFINE_integer(
    "attack_start_round", 1,
    "First round (1-based) in which the attackers poison and boost; before "
    "it they train like benign clients.")
_POISON_COPIES = flags.DEFINE_integer(
    "poison_copies", 1, "Keyed copies of each source image the attacker adds.")
_KEY_SIZE = flags.DEFINE_integer(
    "key_size", 4, "Side of the checkerboard key (with --key_pixels unset).")
_KEY_PIXELS = flags.DEFINE_list(
    "key_pixels", [], "Fig. 1's n-pixel keys (1, 3, 5, 7, 9) instead of the "
    "checkerboard; several: a sweep, one run per pattern (Table I).")
_LABEL_PAIRS = flags.DEFINE_list(
    "label_pairs", [], "victim:target pairs, e.g. 9:0,9:1: a sweep, one run "
    "per pair (Tables II-VI), replacing --source_label / --target_label.")
_KEY_POSITION = flags.DEFINE_enum(
    "key_position", "corner", ["corner", "center"],
    "Bottom-right corner (blank in handwriting) or the image centre.")


# Default 1: the figures in docs/results/pruning.md were measured with one
# stream and TensorFlow's default threads; --parallelism=0 is ~1.4x faster on
# 2 cores and rounds floats differently (binaries/common.py).
_PARALLELISM = common.define_parallelism_flag(
    default=1, note=" Default 1 here: the documented supervised runs used it.")
_PROGRESS = common.define_progress_flag()


def _ints(flag) -> tuple[int, ...]:
  try:
    return tuple(int(v) for v in flag.value)
  except ValueError:
    raise ValueError(f"--{flag.name} must be integers, got "
                     f"{','.join(flag.value)}") from None


def config_from_flags() -> training.SupervisedConfig:
  image_dataset = training.is_image_dataset(_DATASET.value)
  if image_dataset:
    for name in ("num_labels", "train_copies", "test_copies"):
      common.refuse_if_set(name, f"--dataset={_DATASET.value}",
                           "it shapes a task built from a class pool; the "
                           "paper's datasets come with 10 labels and their "
                           "own images")
  else:
    common.refuse_if_set("val_size", f"--dataset={_DATASET.value}",
                         "it sizes the validation set of mnist, "
                         "fashion_mnist and cifar10")
  key_pixels = _ints(_KEY_PIXELS)
  if _LABEL_PAIRS.value:
    for name in ("source_label", "target_label"):
      common.refuse_if_set(name, "--label_pairs",
                           "the pairs set the victim and target labels")
  if key_pixels:
    common.refuse_if_set("key_size", "--key_pixels",
                         "Fig. 1's patterns fill a 3x3 block")
  if image_dataset:
    data_dir = (_DATA_DIR.value
                or supervised_datasets.default_data_dir(_DATASET.value))
  else:
    data_dir = data_preflight.resolve_data_dir(_DATASET.value, _DATA_DIR.value)
  return training.SupervisedConfig(
      dataset=_DATASET.value, seed=_SEED.value, data_dir=data_dir,
      num_labels=_NUM_LABELS.value, train_copies=_TRAIN_COPIES.value,
      test_copies=_TEST_COPIES.value, val_size=_VAL_SIZE.value,
      num_clients=_NUM_CLIENTS.value,
      labels_per_client=_LABELS_PER_CLIENT.value,
      clients_per_round=_CLIENTS_PER_ROUND.value, rounds=_ROUNDS.value,
      epochs=_EPOCHS.value, batch_size=_BATCH_SIZE.value,
      learning_rate=_LEARNING_RATE.value, filters=_ints(_FILTERS),
      hidden=_ints(_HIDDEN), kernel_size=_KERNEL_SIZE.value,
      conv_padding=_CONV_PADDING.value, head=_HEAD.value,
      attack=_ATTACK.value, num_attackers=_NUM_ATTACKERS.value,
      source_label=_SOURCE_LABEL.value, target_label=_TARGET_LABEL.value,
      boosting_factor=_BOOSTING_FACTOR.value,
      attack_start_round=_ATTACK_START_ROUND.value,
      poison_copies=_POISON_COPIES.value, key_size=_KEY_SIZE.value,
      key_position=_KEY_POSITION.value,
      key_pixels=key_pixels[0] if len(key_pixels) == 1 else 0,
      aggregator=_AGGREGATOR.value, runtime=_RUNTIME.value)


def sweep_from_flags(config: training.SupervisedConfig) -> list:
  """The runs the flags ask for (one unless pairs / patterns are listed)."""
  key_pixels = _ints(_KEY_PIXELS)
  return sweeps.members(config,
                        sweeps.parse_label_pairs(_LABEL_PAIRS.value),
                        key_pixels if len(key_pixels) > 1 else ())


@common.user_errors_exit_2
def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}; all options are flags")
  config = config_from_flags()
  sweep = sweep_from_flags(config)
  common.configure_progress(_PROGRESS.value)
  if config.runtime == "inprocess":
    common.configure_parallelism(_PARALLELISM.value, config.clients_per_round)
  name = common.resolve_experiment_name(_EXPERIMENT_NAME,
                                        f"supervised_{config.dataset}")
  output_dir = f"{_ROOT_OUTPUT_DIR.value}/{name}"
  # The data first: a missing or malformed file ends the run before anything
  # is written.
  data, description = training.load_task(config)
  print(description)
  for member in sweep:  # every run's federation is valid before any writes
    training.build_federation(sweeps.member_config(config, member), data)
  common.lock_run_dir(output_dir)  # One writer per run directory.
  common.write_flags(output_dir, [__name__, "__main__"])
  with _runtime(config.runtime):
    if len(sweep) == 1 and not sweep[0].name:
      summary = fedavg.run_supervised(config, output_dir, data=data)
      summaries = [{"member": "", **summary}]
    else:
      summaries = sweeps.run_sweep(config, sweep, output_dir, data)
  for summary in summaries:
    logging.debug("done: %s", summary)
    print(f"{summary['member'] + ': ' if summary['member'] else ''}"
          f"test accuracy {summary['test_accuracy']:.4f}, attack success "
          f"{summary['attack_success']:.4f} after {summary['rounds']} rounds")
  print(f"results in {output_dir}")


def _runtime(runtime: str):
  if runtime == "tff":
    from fedmeta_tf.tff_process import contexts  # pylint: disable=g-import-not-at-top
    return contexts.tff_runtime()
  return contextlib.nullcontext()


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
