"""Log levels shared by the library: silencing known-harmless INFO chatter.

Saving a SavedModel (TensorFlow) or a TFF program state logs several INFO
lines per save ("Found untraced functions such as _jit_compiled_...",
"Function `serve` contains input name(s) resource ...", "Assets written
to ...", "Writing fingerprint to ..."): harmless, and nothing a user can act
on. `quiet()` is wrapped around those calls, at the places they come from.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from absl import logging as absl_logging
import tensorflow as tf


@contextlib.contextmanager
def quiet() -> Iterator[None]:
  """Hides absl's and TensorFlow's INFO lines (warnings still show) inside.

  Asking for debug output (`--verbosity=1` or more) keeps everything.
  """
  absl_level = absl_logging.get_verbosity()
  if absl_level >= absl_logging.DEBUG:
    yield
    return
  tf_logger = tf.get_logger()
  tf_level = tf_logger.level
  absl_logging.set_verbosity(absl_logging.WARNING)
  tf_logger.setLevel(logging.WARNING)
  try:
    yield
  finally:
    absl_logging.set_verbosity(absl_level)
    tf_logger.setLevel(tf_level)
