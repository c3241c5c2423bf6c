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


def test_auto_delta_writes_its_curves_and_per_layer_deltas(attacked_run):
  with flagsaver.flagsaver(**_flags(attacked_run, deltas=["0.3", "auto"],
                                    cases=["b"], name="auto", export=False)):
    defend.main(["defend"])
  out = os.path.join(attacked_run, "defend", "auto")
  for name in ("deltaauto_case_b.csv", "unattacked_deltaauto_case_b.csv",
               "deltaauto.png", "delta0.3_case_b.csv", "delta_sweep.png"):
    assert os.path.isfile(os.path.join(out, name)), name
  with open(os.path.join(out, "summary.json")) as f:
    summary = json.load(f)
  assert summary["deltas"] == [0.3, "auto"]
  assert set(summary["mean_over_clients"]) == {"delta0.3/b", "deltaauto/b"}
  assert summary["auto_delta_ratio"] == pytest.approx(3 / 7)
  for key in ("auto_delta", "unattacked_auto_delta"):
    layers = summary[key]["client1"]
    assert "conv1/kernel" in layers and "norm4/gamma" in layers
    assert all(0.0 < d < 1.0 for d in layers.values())
  # Attacked and pre-trained weights differ in norm: so do their deltas.
  assert summary["auto_delta"] != summary["unattacked_auto_delta"]


def test_auto_delta_flags_refused_with_one_line(attacked_run, capsys):
  cases = [({"deltas": ["0.3", "auto", "x"]},
            "--deltas must be numbers in [0, 1] or auto, got 0.3,auto,x"),
           ({"deltas": ["0.3"], "auto_delta_ratio": 1.0},
            "--auto_delta_ratio=1.0 has no effect with --deltas=0.3"),
           ({"deltas": ["auto"], "auto_delta_ratio": -1.0},
            "auto_delta_ratio must be a finite number >= 0")]
  for overrides, message in cases:
    capsys.readouterr()
    with flagsaver.flagsaver(**_flags(attacked_run, name="refused",
                                      **overrides)):
      with pytest.raises(SystemExit) as e:
        defend.main(["defend"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
  assert not os.path.exists(os.path.join(attacked_run, "defend", "refused",
                                         "summary.json"))
