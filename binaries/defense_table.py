r"""One table of every defense against the same one-shot boosted attack.

    python -m binaries.defense_table --flagfile=configs/omniglot_defense_table_cpu.cfg
    python -m binaries.defense_table --from=runs/omniglot_attack_a \
        --server_defense=secure_mean --server_defense=median \
        --local_deltas=0.3,auto --output=runs/table.md

Reads an in-process Experiment 1 run (binaries.train_fedmeta --attack=...,
which keeps its attacker's update), runs the rows it lacks under
<run>/defense_table/ (each server defense: that experiment again with the
aggregator, the attack replayed; the local matching defense at each delta on
the first row's models) and writes one Markdown page with a table and a
figure (<page stem>.png beside it). Finished rows are read, not re-run.
See fedmeta_tf/experiments/defense_table.py and docs/server_defenses.md
("The table of every defense").
"""

import os
import sys

from absl import app
from absl import flags

from binaries import quiet

if __name__ == "__main__":
  quiet.quiet_start("tensorflow", "tensorflow_federated")

# pylint: disable=g-import-not-at-top,wrong-import-position
from binaries import common
from fedmeta_tf.experiments import attack_config
from fedmeta_tf.experiments import defense_table
from fedmeta_tf.reporting import defense_table_page
from fedmeta_tf.reporting import machine
from fedmeta_tf.reporting import release

_FROM = common.define_from_flag(
    "The attack run (in-process) whose pre-trained model and attacker update "
    "every row uses.")
_SERVER_DEFENSES = flags.DEFINE_multi_string(
    "server_defense", ["secure_mean"], "An aggregator spec per server row "
    "(repeat the flag; --aggregator's syntax, e.g. weak_dp:clip=1,noise=0.1); "
    "the first is the reference (no defense).")
_LOCAL_DELTAS = flags.DEFINE_list(
    "local_deltas", ["0.3", "auto"], "A local-defense row per delta (the "
    "matching defense of binaries.defend); empty: no local rows.")
_LOCAL_STEPS = flags.DEFINE_integer(
    "local_steps", 50, "The local defense's fine-tuning iterations.")
_LOCAL_EPISODES = flags.DEFINE_integer(
    "local_episodes", 10, "The local defense's episodes per benign client.")
_OUTPUT = flags.DEFINE_string(
    "output", None, "The Markdown page (default: <from>/defense_table/"
    "table.md); its figure is written beside it as <stem>.png.")
_PARALLELISM = common.define_parallelism_flag()
_PROGRESS = common.define_progress_flag()


@common.user_errors_exit_2
def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}; all options are flags")
  if not _FROM.value:
    raise ValueError("--from: give the attack run directory the rows start "
                     "from (binaries.train_fedmeta --attack=boosted "
                     "--runtime=inprocess)")
  source = _FROM.value.rstrip("/")
  try:
    table = defense_table.TableConfig(
        server_defenses=tuple(_SERVER_DEFENSES.value),
        local_deltas=tuple(_LOCAL_DELTAS.value),
        local_steps=_LOCAL_STEPS.value, local_episodes=_LOCAL_EPISODES.value)
  except ValueError as e:
    raise ValueError(f"--server_defense / --local_*: {e}") from None
  defense_table.check_source(source)  # a clear error before anything runs
  output = _OUTPUT.value or os.path.join(source, defense_table.SUBDIR,
                                         "table.md")
  if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
    raise ValueError(f"--output={output}: its directory does not exist")
  common.configure_parallelism(_PARALLELISM.value, 3)
  common.configure_progress(_PROGRESS.value)
  rows = defense_table.run_table(source, table)
  figure = os.path.splitext(output)[0] + ".png"
  defense_table_page.plot(rows, figure)
  release.write_json_atomically(os.path.splitext(output)[0] + ".json", rows)
  config, _ = attack_config.load_run(source)
  release.write_text_atomically(output, defense_table_page.page_markdown(
      rows, title=f"Every defense against one boosted attack "
      f"({config.dataset}, {source})", command=machine.command_line(sys.argv), machine=machine.describe(),
      commit=machine.git_commit() or "unknown", source=source,
      figure=os.path.basename(figure)))
  print(defense_table_page.table_markdown(rows))
  print("\n".join(defense_table_page.findings(rows)))
  print(f"table written to {output} (figure {figure})")


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
