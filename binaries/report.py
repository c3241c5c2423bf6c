r"""Reproduction report: our numbers next to the papers', with the figures.

    python -m binaries.report --flagfile=configs/reproduction_report.cfg
    python -m binaries.report --from=runs/omniglot_attack_a,runs/omni_try \
        --output=runs/report.md

Writes one Markdown page: a summary table (experiment | what | ours | paper
| run), then per run directory the command that made it (run_info.json),
the committed flagfile it traces to, flag by flag against its flags.json,
the machine, commit and wall time, its numbers beside the paper's, and its
PNG figures, copied into `<page>_figures/<run>/` beside the page (so the
page can be committed without runs/). A missing run directory is one line
naming the flagfile that makes it (exit status 2). See
`fedmeta_tf/reporting/reproduction_report.py`.
"""

import sys

from absl import app
from absl import flags

from binaries import common
from binaries import quiet
from fedmeta_tf.defenses.pruning import paper_tables
from fedmeta_tf.reporting import machine
from fedmeta_tf.reporting import reproduction_report

_FROM = common.define_from_flag(
    "Run directories, comma-separated, relative to the current directory.")
_OUTPUT = flags.DEFINE_string(
    "output", None, "The Markdown file (default: report.md next to the first "
    "run directory); its figures go to <stem>_figures/ beside it.")


@common.user_errors_exit_2
def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}; all options are flags")
  run_dirs = [d.strip() for d in (_FROM.value or "").split(",") if d.strip()]
  if not run_dirs:
    raise ValueError("--from needs at least one run directory")
  output = _OUTPUT.value or reproduction_report.default_output(run_dirs)
  _, warnings = reproduction_report.build_report(
      run_dirs, output, paper_tables=paper_tables.TABLES,
      command=machine.command_line(sys.argv))
  for warning in warnings:
    print(warning)
  print(f"report of {len(run_dirs)} run(s) written to {output} (figures in "
        f"{reproduction_report.figures_dir(output)})")


if __name__ == "__main__":
  quiet.quiet_start()  # No TensorFlow here; see binaries/quiet.py.
  app.run(main, flags_parser=common.parse_flags)
