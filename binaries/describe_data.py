r"""Prints a dataset's protocol: class counts and allocations (Section 3.2).

    python -m binaries.describe_data --dataset=omniglot  # data/omniglot

Applies the same loader and protocol as training (and the attack's class
reservation, `fedmeta_tf.attacks.backdoor_data.reserve_classes`, with the
paper's number of backdoor classes unless --reserve_backdoor_classes=0) and
prints our numbers next to the paper's.
"""

from absl import app
from absl import flags

from binaries import common
from binaries import data_preflight
from binaries import protocol_flags
from binaries import quiet
from fedmeta_tf.data import describe
from fedmeta_tf.data import registry

_DATASET = flags.DEFINE_string(
    "dataset", "omniglot",
    "glyphs | omniglot | miniimagenet | celeba | archive")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Where the dataset is; default data/<dataset>.")
_SEED = flags.DEFINE_integer("seed", 0, "The run's seed (class choices).")
_NUM_CLIENTS = flags.DEFINE_integer("num_clients", 4, "M, clients.")
_RESERVE = flags.DEFINE_integer(
    "reserve_backdoor_classes", -1,
    "Backdoor classes the attack reserves (plus 1 target); -1: the paper's "
    "(Omniglot 4, mini-ImageNet 1, CelebA 1, others 0); 0: none.")
_CELEBA_IDENTITIES = flags.DEFINE_string(
    "celeba_identities", "",
    "CelebA identity selection, e.g. 'exclude=12,34;backdoor=2820;target=10' "
    "(empty: the inferred paper choice, see celeba.IdentitySelection).")


def _reserve_fn(name, count, seed):
  if count == 0:
    return None, ""
  try:
    # pylint: disable-next=g-import-not-at-top
    from fedmeta_tf.attacks import backdoor_data
  except ImportError:
    return None, "(the attack's class reservation is not available)"
  target, backdoor = registry.default_attack_classes(name)
  def reserve(pool):
    return backdoor_data.reserve_classes(pool, num_backdoor_classes=count,
                                         seed=seed, target_class=target,
                                         backdoor_classes=backdoor[:count])
  return reserve, ""


def _allocation(name) -> str:
  """The attack's examples per reserved class, next to the paper's."""
  if name is registry.DatasetName.MINIIMAGENET:
    # pylint: disable-next=g-import-not-at-top
    from fedmeta_tf.data import mini_imagenet as m
    return (f"paper: {m.BENIGN_EXAMPLES} to benign clients, "
            f"{m.ATTACKER_BENIGN_EXAMPLES} benign for the attacker, "
            f"{m.ATTACK_TRAIN_EXAMPLES} keyed training, "
            f"{m.ATTACK_VAL_EXAMPLES} keyed validation")
  if name is registry.DatasetName.CELEBA:
    from fedmeta_tf.data import celeba  # pylint: disable=g-import-not-at-top
    return (f"paper: backdoor identity without hat in the pool; "
            f"{celeba.ATTACK_TRAIN_IMAGES} keyed training + "
            f"{celeba.ATTACK_VAL_IMAGES} keyed validation images (with hat)")
  # pylint: disable-next=g-import-not-at-top
  from fedmeta_tf.attacks import backdoor_data
  config = backdoor_data.BackdoorConfig()
  return (f"{config.benign_examples} examples to benign clients, "
          f"{config.attack_train_examples} keyed for the attacker, "
          f"{config.attack_val_examples} keyed for attack validation "
          "(attack defaults; paper: 10 to benign clients, 5 keyed for the "
          "attacker)")


@common.user_errors_exit_2
def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}; all options are flags")
  name = registry.parse_dataset_name(_DATASET.value)
  data_dir = data_preflight.resolve_data_dir(_DATASET.value, _DATA_DIR.value)
  registry.check_data_available(name, data_dir)
  extra = []
  if name is registry.DatasetName.CELEBA:
    from fedmeta_tf.data import celeba  # pylint: disable=g-import-not-at-top
    data = celeba.load_celeba(
        data_dir, seed=_SEED.value,
        selection=celeba.IdentitySelection.parse(_CELEBA_IDENTITIES.value))
    pool = data.pool
    extra.append(f"celeba: {data.describe()}")
  else:
    pool = registry.load_dataset(name, data_dir, seed=_SEED.value)
  if name is registry.DatasetName.MINIIMAGENET:
    # pylint: disable-next=g-import-not-at-top
    from fedmeta_tf.data import mini_imagenet
    extra.append(f"classes: {mini_imagenet.describe_layout(pool)}")
  count = (_RESERVE.value if _RESERVE.value >= 0 else
           describe.PAPER_BACKDOOR_CLASSES.get(name, 0))
  reserve, note = _reserve_fn(name, count, _SEED.value)
  counts = describe.protocol_counts(
      pool, name, num_clients=_NUM_CLIENTS.value, seed=_SEED.value,
      reserve=reserve,
      protocol=protocol_flags.protocol_from_flags(_DATASET.value))
  lines = describe.format_counts(counts, name)
  lines.insert(2, f"original split: {describe.class_count_summary(pool)}")
  if reserve is not None:
    lines.insert(4, f"  per reserved class: {_allocation(name)}")
  if note:
    lines.append(note)
  print("\n".join(lines + extra))


if __name__ == "__main__":
  quiet.quiet_start()  # No TensorFlow here; see binaries/quiet.py.
  app.run(main, flags_parser=common.parse_flags)
