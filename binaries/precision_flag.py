"""`--precision`: float32 or Keras mixed bfloat16 (`fedmeta_tf/models/precision.py`).

An experiment setting (it changes the rounding of every step), so a run
directory written in one precision is not resumed in the other. train_fedmeta
trains, attacks and evaluates in it; finetune and defend (Experiments 2 and
3) take their own --precision, float32 by default whatever the run's, and
keep their finished units per precision.
"""

from absl import flags
from absl import logging

PRECISION = flags.DEFINE_enum(
    "precision", "float32", ["float32", "mixed_bfloat16"],
    "float32; mixed_bfloat16: convolutions and batch norm in bfloat16; "
    "variables, batch statistics, logits and the Reptile interpolation in "
    "float32 (Keras mixed precision). Faster only on CPUs with AVX512-BF16 "
    "/ AMX or GPUs of compute capability >= 8.0; elsewhere the run says so "
    "and is slower.")


def checked_precision() -> str:
  """--precision's value, after one logged line when it would run slower
  than float32 on this machine."""
  from fedmeta_tf.models import precision  # pylint: disable=g-import-not-at-top
  chosen = precision.parse_precision(PRECISION.value)
  why = precision.why_slower_here(chosen)
  if why:
    logging.warning("--precision=%s will run slower than float32: %s",
                    chosen.value, why)
  return chosen.value


def precision_scope():
  """Keras' dtype policy of --precision for the models built inside (a
  context manager), after `checked_precision`'s line."""
  from fedmeta_tf.models import precision  # pylint: disable=g-import-not-at-top
  return precision.policy(checked_precision())
