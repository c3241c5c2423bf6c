"""Pure functions of the reproduction report: flagfile tracing, figures."""

import json
import os

import pytest

from fedmeta_tf.reporting import flag_trace
from fedmeta_tf.reporting import report_figures


@pytest.mark.parametrize("text, value", [
    ("0.2,0.3", [0.2, 0.3]), ("0.2,0.3", ["0.2", "0.3"]), ("3", 3.0),
    ("true", True), (None, True), ("false", False), ("ranking",
                                                     "Vote.RANKING"),
    ("1", ["1"]), ("2:3", "2:3"), ("1e6", 1000000.0), ("", None),
    ("runs/x", "runs/x")])
def test_values_agree(text, value):
  assert flag_trace.values_agree(text, value)


@pytest.mark.parametrize("text, value", [
    ("0.2,0.3", [0.2]), ("3", 4), ("true", False), ("majority",
                                                    "Vote.RANKING"),
    ("a", "b")])
def test_values_differ(text, value):
  assert not flag_trace.values_agree(text, value)


def test_parse_command_and_nested_flagfiles(tmp_path):
  inner = tmp_path / "inner.cfg"
  inner.write_text("# comment\n--steps=5\n--noexport\n")
  outer = tmp_path / "outer.cfg"
  outer.write_text(f"--flagfile={inner}\n--steps=7\n--episodes=2\n")
  binary, flagfiles, overrides = flag_trace.parse_command(
      f"python -m binaries.defend --flagfile={outer} --episodes 3 --verbose")
  assert binary == "binaries.defend" and flagfiles == [str(outer)]
  assert overrides == [("episodes", "3"), ("verbose", None)]
  assert flag_trace.read_flagfile(str(outer)) == [
      ("steps", "5"), ("noexport", None), ("steps", "7"), ("episodes", "2")]
  agree, differ, unrecorded = flag_trace.compare(
      flag_trace.read_flagfile(str(outer)),
      {"steps": 7, "export": False}, {}, skip={"episodes"})
  assert (sorted(agree), differ, unrecorded) == (["noexport", "steps"], [],
                                                 [])


def test_maker_of_names_the_committed_flagfile(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert flag_trace.maker_of("runs/omniglot_attack_a/finetune") == (
      "python -m binaries.finetune --flagfile=configs/"
      "omniglot_finetune_cpu.cfg")
  assert flag_trace.maker_of("runs/omniglot_attack_a/defend/matching") == (
      "python -m binaries.defend --flagfile=configs/omniglot_defend_cpu.cfg")
  assert "mnist_table1_prune.cfg" in flag_trace.maker_of(
      "runs/mnist_table1_cpu/pruning")
  assert flag_trace.maker_of("runs/no_such_run") is None


def test_figures_skip_sub_runs_and_follow_a_sweep(tmp_path):
  run = tmp_path / "runs" / "sweep"
  for path in ("a.png", "tensorboard/t.png", "sub/flags.json", "sub/s.png",
               "pixels1/summary.json", "pixels1/pruning/pruning.png",
               "pruning/flags.json", "pruning/own.png"):
    (run / path).parent.mkdir(parents=True, exist_ok=True)
    (run / path).write_text("x")
  (run / "sweep.json").write_text(json.dumps(
      {"members": [{"name": "pixels1"}]}))
  names = lambda figs: [n for _, n in figs]  # pylint: disable=unnecessary-lambda-assignment
  assert names(report_figures.run_figures(str(run))) == ["a.png"]
  assert names(report_figures.run_figures(str(run / "pruning"))) == [
      "own.png", "pixels1-pruning.png"]
  assert report_figures.slugs([str(run), str(run / "pruning"),
                               str(tmp_path / "x" / "y")]) == [
                                   "sweep", "sweep-pruning", "x-y"]
  dest = tmp_path / "out"
  dest.mkdir()
  (dest / "stale.png").write_text("old")
  copies, warnings = report_figures.copy_figures(
      [(str(run / "a.png"), "a.png")], str(dest))
  assert os.listdir(dest) == ["a.png"] and not warnings
  assert copies == [str(dest / "a.png")]


def test_defense_rows_name_fixed_and_automatic_deltas():
  from fedmeta_tf.reporting import paper_rows  # pylint: disable=g-import-not-at-top
  from fedmeta_tf.reporting import reproduction_report  # pylint: disable=g-import-not-at-top
  means = {"backdoor_train_accuracy": 0.2, "backdoor_val_accuracy": 0.1,
           "main_task_accuracy": 0.9, "meta_test_accuracy": 0.95}
  run = reproduction_report.Run(
      path="runs/x/defend/matching", kind="defend",
      flags={"dataset": "omniglot"}, run_info={},
      summary={"steps": 50, "mean_over_clients": {"delta0.3/a": means,
                                                  "deltaauto/a": means}},
      metrics_rows=[], tables=[])
  whats = [r.what for r in paper_rows.rows(run)]
  assert any(w.startswith("delta 0.3, case (a)") for w in whats), whats
  assert any(w.startswith("delta auto, case (a)") for w in whats), whats
