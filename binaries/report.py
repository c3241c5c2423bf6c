r"""Reproduction report: our numbers next to the papers', with the figures.

    python -m binaries.report --from=runs/omniglot_attack_a,runs/omni_try \
        --output=runs/report.md

Reads each run directory's flags.json, summary.json (or metrics.csv) and PNG
figures; see `fedmeta_tf/reporting/reproduction_report.py`.
"""

from absl import app
from absl import flags

from binaries import common
from binaries import quiet
from fedmeta_tf.reporting import reproduction_report

_FROM = common.define_from_flag("Run directories, comma-separated.")
_OUTPUT = flags.DEFINE_string(
    "output", None, "The Markdown file (default: report.md next to the first "
    "run directory).")


@common.user_errors_exit_2
def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}; all options are flags")
  run_dirs = [d for d in (_FROM.value or "").split(",") if d]
  if not run_dirs:
    raise ValueError("--from needs at least one run directory")
  output = _OUTPUT.value or reproduction_report.default_output(run_dirs)
  reproduction_report.build_report(run_dirs, output)
  print(f"report of {len(run_dirs)} run(s) written to {output}")


if __name__ == "__main__":
  quiet.quiet_start()  # No TensorFlow here; see binaries/quiet.py.
  app.run(main, flags_parser=common.parse_flags)
