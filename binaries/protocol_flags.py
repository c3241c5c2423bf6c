"""The protocol's sizes as flags (main paper, Sections 3.2 and 3.3).

Shared by `train_fedmeta` (saved with the run: flags.json and the
experiment's config) and `describe_data`. Unset, each is the dataset's
paper value (`registry.PROTOCOLS`); `protocol_from_flags` applies them
(`registry.protocol_for`).
"""

from absl import flags

from fedmeta_tf.data import registry

NUM_META_TRAIN = flags.DEFINE_integer(
    "num_meta_train", None, "Meta-training classes; unset: the paper's "
    "(Omniglot 1200 drawn at random, CelebA 2156; mini-ImageNet, glyphs, "
    "archive: all of the dataset's own meta-training classes, of which a "
    "value takes that many).", lower_bound=1)
NUM_META_TEST = flags.DEFINE_integer(
    "num_meta_test", None, "Meta-testing classes; unset: the paper's "
    "(CelebA 200; others: all the classes left, or all of the dataset's own "
    "meta-testing classes).", lower_bound=1)
EXAMPLES_PER_CLASS = flags.DEFINE_integer(
    "examples_per_class", None, "Examples of each class used, drawn at "
    "random; unset: the paper's (CelebA 30 images per identity, which also "
    "need that many; others: all, e.g. Omniglot 20, mini-ImageNet 600).",
    lower_bound=1)
HELDOUT_PER_CLASS = flags.DEFINE_integer(
    "heldout_per_class", None, "Examples of each meta-training class held "
    "out (main-task queries of the backdoor evaluation); unset: the "
    "paper's (5; mini-ImageNet 20).", lower_bound=0)


def protocol_from_flags(dataset: str) -> registry.Protocol:
  """The paper's protocol of `dataset` with the sizes the flags set."""
  return registry.protocol_for(
      dataset, num_meta_train=NUM_META_TRAIN.value,
      num_meta_test=NUM_META_TEST.value,
      examples_per_class=EXAMPLES_PER_CLASS.value,
      heldout_per_class=HELDOUT_PER_CLASS.value)
