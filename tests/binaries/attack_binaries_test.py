"""Smoke tests: train_fedmeta --attack (Experiment 1) and finetune (Exp 2)."""

import json
import os

import numpy as np

from absl import flags
from absl.testing import flagsaver
import pytest

from binaries import finetune
from binaries import train_fedmeta
from fedmeta_tf.data import class_pool
from tests.conftest import tiny_pool

FLAGS = flags.FLAGS


def attack_flags(root, archive, **overrides):
  """Experiment 1 at toy size (the defense table's tests use it too)."""
  return dict(
      dataset="archive", data_dir=archive, root_output_dir=str(root),
      experiment_name="attack", runtime="inprocess", filters=4, rounds=2,
      pretrain_rounds=1, episodes_per_round=1, meta_batch=2, inner_steps=2,
      eval_inner_steps=2, eval_episodes=2, eval_every=1, attack="boosted",
      attacker_iterations=2, attacker_inner_steps=2, backdoor_eval_episodes=2,
      case="b") | overrides


def run_attack(tmp_path_factory, directory, **overrides) -> str:
  """Runs `attack_flags(**overrides)` on a fresh tiny archive in a new
  temporary `directory`; the run directory."""
  root = tmp_path_factory.mktemp(directory)
  archive = str(root / "tiny.npz")
  class_pool.save_class_pool_archive(tiny_pool(num_classes=40, examples=20),
                                     archive)
  FLAGS.mark_as_parsed()
  values = attack_flags(root, archive, **overrides)
  with flagsaver.flagsaver(**values):
    train_fedmeta.main(["train_fedmeta"])
  return str(root / values["experiment_name"])


@pytest.fixture(scope="module")
def attack_run(tmp_path_factory):
  return run_attack(tmp_path_factory, "runs")


def _archive_of(run_dir):
  return os.path.join(os.path.dirname(run_dir), "tiny.npz")


def test_pretrained_from_starts_from_that_runs_pretrained_model(attack_run):
  # Case (c) gives benign clients the same classes as (b); the aggregator may
  # differ (Experiment 3e starts from the FedAvg model).
  root = os.path.dirname(attack_run)
  with flagsaver.flagsaver(**{**attack_flags(root, _archive_of(attack_run)),
                              "experiment_name": "from_pretrained", "case": "c",
                              "rounds": 1, "aggregator": "median",
                              "pretrained_from": attack_run}):
    train_fedmeta.main(["train_fedmeta"])
  ours = np.load(os.path.join(root, "from_pretrained", "checkpoints",
                              "pretrained.npz"))
  theirs = np.load(os.path.join(attack_run, "checkpoints", "pretrained.npz"))
  assert ours.files == theirs.files
  for name in ours.files:
    np.testing.assert_array_equal(ours[name], theirs[name])


@pytest.mark.parametrize("change,named", [
    ({"case": "a"}, "case"), ({"seed": 1}, "seed"),
    ({"pretrain_rounds": 2}, "pretrain_rounds")])
def test_pretrained_from_refuses_a_run_pretrained_otherwise(
    attack_run, capsys, change, named):
  root = os.path.dirname(attack_run)
  with flagsaver.flagsaver(**{**attack_flags(root, _archive_of(attack_run)),
                              "experiment_name": "refused",
                              "pretrained_from": attack_run, **change}):
    with pytest.raises(SystemExit) as e:
      train_fedmeta.main(["train_fedmeta"])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and "--pretrained_from=" in err and named in err
  assert not os.path.exists(os.path.join(root, "refused"))  # nothing written


def test_train_fedmeta_attack_writes_the_run_directory(attack_run):
  for name in ("metrics.csv", "pretrain_metrics.csv", "experiment.json",
               "backdoor_data.npz", "experiment1.png", "summary.json",
               "checkpoints/pretrained.npz", "checkpoints/attacked.npz",
               "checkpoints/final.npz", "saved_model/attacked/saved_model.pb"):
    assert os.path.exists(os.path.join(attack_run, name)), name
  with open(os.path.join(attack_run, "summary.json")) as f:
    summary = json.load(f)
  assert [r["round"] for r in summary["metrics"]] == [0, 1, 2]
  assert [r["attack"] for r in summary["metrics"]] == [0, 1, 0]
  assert "0" in summary["metrics"][1]["clients"].split()
  assert "0" not in summary["metrics"][2]["clients"].split()


def test_finetune_runs_cases_b_and_c_from_the_run(attack_run):
  with flagsaver.flagsaver(steps=4, curve_every=2, episodes=1, clients=["1"]):
    FLAGS["from"].value = attack_run
    finetune.main(["finetune"])
  out = os.path.join(attack_run, "finetune")
  for name in ("finetune_case_b.csv", "finetune_case_c.csv",
               "experiment2.png", "summary.json"):
    assert os.path.exists(os.path.join(out, name)), name
  with open(os.path.join(out, "finetune_case_b.csv")) as f:
    lines = f.read().splitlines()
  assert lines[0].startswith("step,") and "client1/backdoor_val_accuracy" in lines[0]
  assert [l.split(",")[0] for l in lines[1:]] == ["0", "2", "4"]


def _curves(directory):
  with open(os.path.join(directory, "finetune_case_b.csv")) as f:
    return f.read()


def test_finetune_shots_reach_the_episodes(attack_run):
  # The run's K (eval_shots 5 by default) gives the curves of finetune/;
  # K = 2 others, written beside them.
  runs = {}
  for shots in (None, 5, 2):
    with flagsaver.flagsaver(steps=2, curve_every=2, episodes=1,
                             clients=["1"], cases=["b"],
                             finetune_shots=shots):
      FLAGS["from"].value = attack_run
      finetune.main(["finetune"])
    runs[shots] = _curves(os.path.join(
        attack_run, "finetune" if shots is None else f"finetune_k{shots}"))
  assert runs[5] == runs[None]
  assert runs[2] != runs[None]


def test_finetune_rejects_a_case_the_run_cannot_give(attack_run):
  with flagsaver.flagsaver(steps=2, curve_every=2, episodes=1, cases=["a"]):
    FLAGS["from"].value = attack_run
    with pytest.raises(SystemExit) as e:
      finetune.main(["finetune"])
    assert e.value.code == 2


# --- --attacker_update_from: the same attack replayed against another server


_LONE = dict(rounds=1, clients_per_round=1, min_updates=1, aggregator="mean")


@pytest.fixture(scope="module")
def lone_attacker_run(tmp_path_factory):
  """One client per round: the attack round's model is theta_G + u_a."""
  return run_attack(tmp_path_factory, "replay", experiment_name="source",
                    **_LONE)


def _lone_flags(root, archive, name):
  return attack_flags(root, archive, experiment_name=name, **_LONE)


def test_attack_run_keeps_the_attackers_update(lone_attacker_run):
  kept = os.listdir(os.path.join(lone_attacker_run, "checkpoints",
                                 "attacker_updates"))
  assert len(kept) == 1 and kept[0].startswith("client_0_")


def test_replayed_update_gives_the_source_runs_attacked_model(
    lone_attacker_run):
  root = os.path.dirname(lone_attacker_run)
  with flagsaver.flagsaver(**{**_lone_flags(root, _archive_of(
      lone_attacker_run), "replay"), "attacker_update_from": lone_attacker_run}):
    train_fedmeta.main(["train_fedmeta"])
  ours = np.load(os.path.join(root, "replay", "checkpoints", "attacked.npz"))
  theirs = np.load(os.path.join(lone_attacker_run, "checkpoints",
                                "attacked.npz"))
  for name in ours.files:  # the attacker alone in the round: theta_G + u_a
    np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-6)
  # The replaying run trained no attacker (no client work was checkpointed
  # for it) and keeps no update of its own.
  assert not os.path.exists(os.path.join(root, "replay", "checkpoints",
                                         "attacker_updates"))


@pytest.mark.parametrize("change,named", [
    ({"attacker_iterations": 3}, "attacker"), ({"runtime": "tff"}, "inprocess"),
    ({"pretrained_from": "elsewhere"}, "--pretrained_from")])
def test_attacker_update_from_refuses_another_attack(lone_attacker_run, capsys,
                                                     change, named):
  root = os.path.dirname(lone_attacker_run)
  with flagsaver.flagsaver(**{**_lone_flags(root, _archive_of(
      lone_attacker_run), "refused_replay"),
                              "attacker_update_from": lone_attacker_run,
                              **change}):
    with pytest.raises(SystemExit) as e:
      train_fedmeta.main(["train_fedmeta"])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and named in err, err
  assert not os.path.exists(os.path.join(root, "refused_replay"))
