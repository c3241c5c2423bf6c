"""What a run shows while it runs (fedmeta_tf/reporting/progress.py)."""

import pytest

from fedmeta_tf.experiments import rounds
from fedmeta_tf.reporting import progress


@pytest.fixture(autouse=True)
def restore_mode():
  yield
  progress.configure("auto")


def test_round_line_shows_accuracies_as_percentages_and_hides_zero_counts():
  row = {"clients": "0 1", "attack": 1, "main_task_accuracy": 0.96,
         "backdoor_val_accuracy": 0.8525, "excluded_updates": 0,
         "accepted_updates": 2, "loss": 0.123456}
  assert progress.format_row(row) == (
      "attack 1, main task 96.0%, backdoor val 85.2%, accepted updates 2, "
      "loss 0.1235")


def test_lines_mode_prints_one_line_per_round_to_stderr(capsys):
  progress.configure("lines")
  loop = rounds.RoundLoop(0, output_dir=None)
  loop.run([rounds.Round(version=r, key=r,
                         step=lambda s: (s + 1, {"meta_test_accuracy": 0.5}))
            for r in (1, 2)])
  captured = capsys.readouterr()
  assert captured.out == ""
  lines = captured.err.splitlines()
  assert len(lines) == 2
  assert lines[0].startswith("round 1/2: meta test 50.0% (")
  assert lines[1].startswith("round 2/2: meta test 50.0% (")


def test_none_mode_prints_nothing(capsys):
  progress.configure("none")
  progress.line("round 1/2: meta test 50.0%")
  with progress.bar(10, "rounds", "round") as counter:
    counter.update(10)
  assert capsys.readouterr().err == ""


def test_bars_mode_draws_a_bar_with_a_rate(capsys):
  progress.configure("bars")
  with progress.bar(10, "server round 7", "it", leave=True) as counter:
    counter.update(4)
    counter.describe("client 0 loss 0.123")
    counter.update(6)
  err = capsys.readouterr().err
  assert "server round 7" in err and "10/10" in err and "it/s" in err
  assert "client 0 loss 0.123" in err


def test_lines_mode_draws_no_bar(capsys):
  progress.configure("lines")
  with progress.bar(10, "server round 7", "it") as counter:
    counter.update(10)
  assert capsys.readouterr().err == ""


def test_unknown_mode_is_refused():
  with pytest.raises(ValueError, match="auto, bars, lines, none"):
    progress.configure("fancy")


@pytest.mark.parametrize("mode, shown", [("lines", True), ("none", False)])
def test_the_progress_flag_reaches_the_binary(tmp_path, capsys, mode, shown):
  # pylint: disable=g-import-not-at-top
  from absl.testing import flagsaver
  from binaries import train_fedmeta
  from tests.binaries.train_fedmeta_test import tiny_flags
  from tests.conftest import tiny_archive
  # pylint: enable=g-import-not-at-top
  archive = tiny_archive(tmp_path)
  with flagsaver.flagsaver(**tiny_flags(archive, tmp_path / "runs",
                                        runtime="inprocess", rounds=1,
                                        progress=mode)):
    train_fedmeta.main(["train_fedmeta"])
  assert ("round 1/1: " in capsys.readouterr().err) == shown
