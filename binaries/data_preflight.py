"""Fails a run without data in about a second, before TensorFlow is imported.

Importing TensorFlow/TFF takes several seconds (much more on a busy machine),
so binaries call `exit_if_data_missing()` at the top, before their heavy
imports. It reads only --dataset and --data_dir (from the command line and any
--flagfile, last value wins), checks the data with
`registry.check_data_available` (no TensorFlow) and, when it is missing,
prints the one-line DataError with the download instructions and exits 2.
Everything else is left to absl's full parse in `main`.

Datasets read from files are looked for in `data/<dataset>` (relative to
the working directory) unless --data_dir is given (`resolve_data_dir`).
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

from absl import flags

from fedmeta_tf.data import registry
from fedmeta_tf.data.class_pool import DataError

EXIT_USAGE = 2
_HELP = ("--help", "-help", "--helpfull", "-helpfull", "--helpshort",
         "-helpshort", "--helpxml", "-h", "-?")


# Datasets read from files: without --data_dir, they are read from
# data/<dataset>. glyphs is embedded (its cache has its own default) and an
# archive is one file that must be named.
_FILE_DATASETS = (registry.DatasetName.OMNIGLOT,
                  registry.DatasetName.MINIIMAGENET,
                  registry.DatasetName.CELEBA)
DATA_ROOT = "data"


def resolve_data_dir(dataset: str, data_dir: Optional[str]) -> Optional[str]:
  """`data_dir` when given, else data/<dataset> for datasets read from files
  (None for the others).

  Raises:
    ValueError: an unknown dataset name.
  """
  if data_dir:
    return data_dir
  name = registry.parse_dataset_name(dataset)
  if name in _FILE_DATASETS:
    return os.path.join(DATA_ROOT, name.value)
  return None


def expanded_argv(argv: Sequence[str]) -> list[str]:
  """argv with every --flagfile expanded (absl's own reader)."""
  try:
    return flags.FlagValues().read_flags_from_files(list(argv),
                                                    force_gnu=False)
  except Exception:  # A bad flagfile is reported by the real parse.
    return list(argv)


def last_value(argv: Sequence[str], *names: str) -> Optional[str]:
  """The last value argv gives to a flag called any of `names` (--name=V,
  --name V, -name=V or -name V), or None."""
  value = None
  for i, arg in enumerate(argv):
    for name in names:
      for prefix in (f"--{name}", f"-{name}"):
        if arg.startswith(prefix + "="):
          value = arg[len(prefix) + 1:]
        elif arg == prefix and i + 1 < len(argv):
          value = argv[i + 1]
  return value


def data_error(argv: Sequence[str], *, default_dataset: str) -> Optional[str]:
  """The DataError message for the data argv names, or None when it is there
  (or when the dataset name is invalid: the full parse reports that)."""
  argv = expanded_argv(argv)
  dataset = last_value(argv, "dataset") or default_dataset
  data_dir = last_value(argv, "data_dir")
  try:
    registry.check_data_available(dataset, resolve_data_dir(dataset, data_dir))
  except DataError as e:
    return str(e)
  except ValueError:
    return None
  return None


def exit_if_data_missing(*, default_dataset: str,
                         argv: Optional[Sequence[str]] = None) -> None:
  """Prints the error and exits 2 when the named data is missing."""
  argv = sys.argv[1:] if argv is None else argv
  if any(a.split("=")[0] in _HELP for a in argv):
    return  # Help needs no data.
  message = data_error(argv, default_dataset=default_dataset)
  if message:
    program = os.path.basename(sys.argv[0]).removesuffix(".py")
    print(f"{program}: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)
