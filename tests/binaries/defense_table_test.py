"""binaries.defense_table: every defense against one replayed attack."""

import json
import os

from absl import flags
from absl.testing import flagsaver
import pytest

from binaries import defense_table
from fedmeta_tf.reporting import defense_table_page
from tests.binaries.attack_binaries_test import run_attack

FLAGS = flags.FLAGS


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  return run_attack(tmp_path_factory, "table", experiment_name="source",
                    case="a")


def _table(source, output, **extra):
  values = dict(server_defense=["secure_mean", "median",
                                "weak_dp:clip=1,noise=0"],
                local_deltas=["0.3"], local_steps=5, local_episodes=1,
                output=output)
  values.update(extra)
  with flagsaver.flagsaver(**values):
    FLAGS["from"].value = source
    defense_table.main(["defense_table"])


@pytest.fixture(scope="module")
def table(source):
  output = os.path.join(os.path.dirname(source), "table.md")
  _table(source, output)
  return output


def test_rows_are_runs_of_each_defense_against_the_replayed_attack(source,
                                                                    table):
  with open(table.replace(".md", ".json")) as f:
    rows = json.load(f)
  assert [r["defense"] for r in rows] == [
      "secure_mean", "median", "weak_dp:clip=1,noise=0",
      "local matching, delta 0.3"]
  assert [r["server_sees_updates"] for r in rows] == [False, True, False,
                                                      False]
  for row in rows[:3]:
    with open(os.path.join(row["run_dir"], "experiment.json")) as f:
      experiment = json.load(f)
    assert experiment["training"]["aggregator"] == row["defense"]
    assert experiment["attack"]["attacker_update_from"] == source
    with open(os.path.join(row["run_dir"], "summary.json")) as f:
      metrics = json.load(f)["metrics"]
    assert row["after_attack"]["backdoor_val_accuracy"] == metrics[1][
        "backdoor_val_accuracy"]
    assert row["meta_test"] == metrics[-1]["meta_test_accuracy"]
    assert row["rounds_later"] == 1
  local = os.path.join(rows[0]["run_dir"], "defend")
  assert sorted(os.listdir(local)) == ["table_attacked", "table_final"]
  with open(os.path.join(local, "table_final", "summary.json")) as f:
    final = json.load(f)["mean_over_clients"]["delta0.3/a"]
  assert rows[3]["meta_test"] == final["meta_test_accuracy"]


def test_page_has_the_table_the_findings_and_the_figure(table):
  with open(table) as f:
    page = f.read()
  assert page.count("\n| ") == 5  # header + 4 rows
  assert "binaries.defense_table" in page and "Machine:" in page
  assert "- Remove the backdoor:" in page
  assert os.path.getsize(table.replace(".md", ".png")) > 10_000


def test_finished_rows_are_read_not_run_again(source, table):
  summary = os.path.join(source, "defense_table", "median", "summary.json")
  before = os.path.getmtime(summary)
  _table(source, table)
  assert os.path.getmtime(summary) == before


@pytest.mark.parametrize("extra,named", [
    ({"server_defense": ["secure_mean", "krum:x"]}, "krum"),
    ({"local_deltas": ["2"]}, "delta"),
    ({"local_steps": 2}, "head_only_steps"),
    ({"output": "/nonexistent/dir/t.md"}, "--output")])
def test_bad_input_is_one_line_exit_2(source, capsys, extra, named):
  with pytest.raises(SystemExit) as e:
    output = extra.pop("output", os.path.join(os.path.dirname(source),
                                              "bad.md"))
    _table(source, output, **extra)
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and named in err, err


def test_a_source_that_kept_no_attacker_update_is_refused(source, capsys,
                                                          tmp_path):
  os.makedirs(tmp_path / "run")
  with open(os.path.join(source, "experiment.json")) as f:
    experiment = f.read()
  (tmp_path / "run" / "experiment.json").write_text(experiment)
  with pytest.raises(SystemExit) as e:
    _table(str(tmp_path / "run"), str(tmp_path / "t.md"))
  assert e.value.code == 2
  assert "no kept attacker update" in capsys.readouterr().err


def test_verdicts():
  def row(after, later, unattacked=0.05):
    pair = lambda v: {"backdoor_train_accuracy": v, "backdoor_val_accuracy": v}
    return {"after_attack": pair(after), "later": pair(later),
            "unattacked": pair(unattacked)}
  reference = row(0.9, 0.8)
  assert defense_table_page.verdict(reference, reference) == "not reduced"
  assert defense_table_page.verdict(row(0.1, 0.12), reference) == "removed"
  assert defense_table_page.verdict(row(0.5, 0.6), reference) == "reduced"
  assert defense_table_page.verdict(row(0.85, 0.6), reference) == (
      "reduced later only")
  assert defense_table_page.verdict(row(0.85, 0.75), reference) == (
      "not reduced")
  assert defense_table_page.verdict(row(0.1, 0.6), reference) == "reduced"
