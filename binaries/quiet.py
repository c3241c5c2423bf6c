"""Quiet start-up: the binaries hide TensorFlow's harmless chatter by default.

Importing TensorFlow prints C++ log lines that say nothing about the run
(no CUDA drivers, CPU instructions it was not built for, cuDNN/cuFFT/cuBLAS
factories registered twice, no TensorRT), and every grappler pass logs two
INFO lines. Each binary calls `quiet_start()` under `if __name__ ==
"__main__":`, before its TensorFlow imports. Unless the command line asks for
debug output (`--verbosity=1` / `-v 1` or more, also from a --flagfile), it

- sets TF_CPP_MIN_LOG_LEVEL=1 (C++ INFO lines hidden, warnings and errors
  kept; inherited by TFF's worker processes) when the user has not set it:
  a user's own value is never changed;
- imports `modules` (tensorflow, tensorflow_federated) with file descriptor
  2 captured, and writes back every captured line but those matching
  `HARMLESS_STARTUP_LINES` (a real error, or a traceback when the import
  fails, still shows); skipped when the user set TF_CPP_MIN_LOG_LEVEL=0,
  which asks for everything;
- drops absl's `I1130 17:10:17.331032 140374580947840 file.py:98]` prefix
  from INFO lines (absl's --showprefixforinfo, whose default it turns off;
  warnings keep theirs).

The INFO lines of each SavedModel or checkpoint save are silenced where they
come from (`fedmeta_tf.logs.quiet`), with the same exception for
--verbosity=1.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
from typing import Iterator, Optional, Sequence

from absl import flags
from absl import logging  # pylint: disable=unused-import  (defines the flags)

from binaries import data_preflight

TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"

# C++ lines printed at WARNING or ERROR level while TensorFlow is imported
# that are harmless; matched against whole lines (a C++ log line starts with
# its time stamp, `E`/`W` and the source file).
HARMLESS_STARTUP_LINES = (
    # TensorFlow and the XLA copy it links each register the CUDA plugins
    # when loaded; the second registration is refused and the first one is
    # used, with or without a GPU (TensorFlow 2.14, tensorflow#62075).
    re.compile(r"\S+ \S+: E \S+\] Unable to register (cuDNN|cuFFT|cuBLAS) "
               r"factory: Attempting to register factory for plugin \S+ when "
               r"one has already been registered"),
    # TensorRT serves only TF-TRT model conversion, which nothing here uses.
    re.compile(r"\S+ \S+: W \S+\] TF-TRT Warning: Could not find TensorRT"),
)


def verbose_requested(argv: Sequence[str]) -> bool:
  """Whether argv (flagfiles expanded) sets absl's --verbosity / -v to 1 or
  more (debug). An unreadable value counts as not: absl's parse reports it."""
  value = data_preflight.last_value(data_preflight.expanded_argv(argv),
                                    "verbosity", "v")
  try:
    return value is not None and int(value) >= 1
  except ValueError:
    return False


def filter_startup_noise(text: str) -> str:
  """`text` without the lines matching `HARMLESS_STARTUP_LINES`."""
  lines = text.splitlines(keepends=True)
  return "".join(line for line in lines
                 if not any(p.match(line) for p in HARMLESS_STARTUP_LINES))


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
  """Captures file descriptor 2 (C++ and Python writes alike) inside, then
  writes it back through `filter_startup_noise`, also when the body raises
  (its traceback is printed after, to the restored stderr)."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      kept = filter_startup_noise(capture.read().decode("utf-8", "replace"))
      if kept:
        sys.stderr.write(kept)
        sys.stderr.flush()


def quiet_start(*modules: str, argv: Optional[Sequence[str]] = None) -> None:
  """Applies the quiet defaults (module docstring) and imports `modules`
  with the harmless start-up lines filtered; does nothing when argv (default
  sys.argv[1:]) asks for --verbosity=1 or more."""
  argv = sys.argv[1:] if argv is None else argv
  if verbose_requested(argv):
    return
  flags.FLAGS.set_default("showprefixforinfo", False)
  if os.environ.get(TF_LOG_LEVEL) == "0":
    return  # The user asked for every C++ line.
  os.environ.setdefault(TF_LOG_LEVEL, "1")
  if modules:
    with filtered_stderr():
      for module in modules:
        importlib.import_module(module)
