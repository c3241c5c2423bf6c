"""Helpers shared by the absl binaries: error reporting and run directories."""

from __future__ import annotations

import functools
import json
import os
import sys

from absl import flags

from fedmeta_tf.data.class_pool import DataError

EXIT_USAGE = 2


def user_errors_exit_2(main):
  """Turns ValueError/DataError into one line on stderr and exit status 2."""

  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except (ValueError, DataError) as e:
      program = os.path.basename(sys.argv[0]).removesuffix(".py")
      print(f"{program}: error: {e}", file=sys.stderr)
      sys.exit(EXIT_USAGE)

  return wrapped


def write_flags(output_dir: str, module_names) -> None:
  """Writes the run's flags (those of the given modules) as a flagfile and JSON."""
  values = {}
  for module in module_names:
    for flag in flags.FLAGS.get_flags_for_module(module):
      values[flag.name] = flag.value
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, "flags.txt.tmp"), "w") as f:
    f.write(flags.FLAGS.flags_into_string())
  os.replace(os.path.join(output_dir, "flags.txt.tmp"),
             os.path.join(output_dir, "flags.txt"))
  with open(os.path.join(output_dir, "flags.json.tmp"), "w") as f:
    json.dump(values, f, indent=2, sort_keys=True, default=str)
  os.replace(os.path.join(output_dir, "flags.json.tmp"),
             os.path.join(output_dir, "flags.json"))
