"""Smoke tests of binaries/defend.py on a tiny attacked run directory."""

import json
import os

from absl.testing import flagsaver
import pytest

from binaries import defend
from fedmeta_tf.data import class_pool
from fedmeta_tf.experiments import backdoor_attack
from tests.conftest import tiny_attack_configs
from tests.conftest import tiny_pool


@pytest.fixture(scope="module")
def attacked_run(tmp_path_factory):
  """Experiment 1 at toy size: 0 pre-training rounds, attack in round 1."""
  root = tmp_path_factory.mktemp("defend")
  archive = str(root / "pool.npz")
  class_pool.save_class_pool_archive(tiny_pool(num_classes=30, examples=12),
                                     archive)
  config, attack = tiny_attack_configs(archive)
  run_dir = str(root / "run")
  backdoor_attack.run_attack_experiment(config, attack, run_dir)
  return run_dir


def _flags(run_dir, **overrides):
  return dict({"from": run_dir, "steps": 4, "head_only_steps": 1,
               "curve_every": 2, "episodes": 1, "clients": ["1"]},
              **overrides)


def test_matching_defense_writes_curves_figures_and_models(attacked_run):
  with flagsaver.flagsaver(**_flags(attacked_run, deltas=["0.3", "0.6"],
                                    cases=["b"])):
    defend.main(["defend"])
  out = os.path.join(attacked_run, "defend", "matching")
  for name in ("delta0.3_case_b.csv", "delta0.6_case_b.csv", "delta0.3.png",
               "delta_sweep.png", "summary.json", "flags.txt"):
    assert os.path.isfile(os.path.join(out, name)), name
  with open(os.path.join(out, "delta0.3_case_b.csv")) as f:
    header, *rows = f.read().splitlines()
  assert "client1/backdoor_train_accuracy" in header
  assert [r.split(",")[0] for r in rows] == ["0", "2", "4"]
  with open(os.path.join(out, "summary.json")) as f:
    summary = json.load(f)
  assert set(summary["mean_over_clients"]) == {"delta0.3/b", "delta0.6/b"}
  assert os.path.isfile(os.path.join(out, "saved_model", "client1",
                                     "saved_model.pb"))


@pytest.mark.parametrize("extra", [{"defense": "supervised"},
                                   {"defense": "protonet",
                                    "local_meta_iterations": 1,
                                    "export": False}])
def test_ablations_run(attacked_run, extra):
  values = _flags(attacked_run, cases=["c"], **extra)
  if extra["defense"] == "supervised":  # refused there (no metric head)
    del values["head_only_steps"]
  with flagsaver.flagsaver(**values):
    defend.main(["defend"])
  name = extra["defense"] + ("_local1" if "local_meta_iterations" in extra
                             else "")
  assert os.path.isfile(os.path.join(attacked_run, "defend", name,
                                     "delta0.3_case_c.csv"))


def test_user_errors_exit_2(attacked_run, tmp_path, capsys):
  with flagsaver.flagsaver(**_flags(str(tmp_path))):
    with pytest.raises(SystemExit) as e:
      defend.main(["defend"])
  assert e.value.code == 2
  assert "not an attack run directory" in capsys.readouterr().err
  with flagsaver.flagsaver(**_flags(attacked_run, clients=["0"])):
    with pytest.raises(SystemExit):
      defend.main(["defend"])
  assert "not a benign client" in capsys.readouterr().err
