"""Smoke test of binaries/report.py on hand-made run directories.

Runs the binary as a subprocess: its --from flag clashes with finetune's and
defend's when imported into one pytest process (no TensorFlow: ~1 s).
"""

import json
import os
import subprocess
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _report(*args):
  return subprocess.run([sys.executable, "-m", "binaries.report", *args],
                        cwd=_REPO, capture_output=True, text=True,
                        timeout=120, check=False)


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


def _attack_run(root):
  run = os.path.join(root, "omniglot_attack_a")
  _write(os.path.join(run, "flags.json"),
         json.dumps({"dataset": "omniglot", "attack": "boosted", "case": "a"}))
  rows = [{"round": 0, "attack": 0, "meta_test_accuracy": 0.99,
           "backdoor_train_accuracy": 0.2, "backdoor_val_accuracy": 0.1},
          {"round": 1, "attack": 1, "meta_test_accuracy": 0.9,
           "backdoor_train_accuracy": 0.9, "backdoor_val_accuracy": 0.8},
          {"round": 2, "attack": 0, "meta_test_accuracy": 0.98,
           "backdoor_train_accuracy": 0.75, "backdoor_val_accuracy": 0.7},
          {"round": 5, "attack": 0, "meta_test_accuracy": 0.985,
           "backdoor_train_accuracy": 0.5, "backdoor_val_accuracy": 0.45}]
  _write(os.path.join(run, "summary.json"),
         json.dumps({"case": "a", "metrics": rows, "wall_seconds": 12.0}))
  _write(os.path.join(run, "experiment1.png"), "not really a png")
  return run


def test_report_tables_figures_and_tolerance(tmp_path):
  attack = _attack_run(str(tmp_path))
  plain = str(tmp_path / "plain")  # in progress: metrics.csv only
  _write(os.path.join(plain, "metrics.csv"),
         "round,meta_test_accuracy,seconds\n0,0.5,0\n1,,3\n2,0.75,6\n")
  prune = str(tmp_path / "prune")
  _write(os.path.join(prune, "flags.json"), json.dumps(
      {"dataset": "fashion_mnist"}))
  _write(os.path.join(prune, "summary.json"), json.dumps(
      {"attack_success": 0.997, "test_accuracy": 0.9, "client_labels": [[1]]}))
  _write(os.path.join(prune, "pruning", "stages.md"), "| stage |\n|---|\n")
  empty = str(tmp_path / "empty")
  os.makedirs(empty)
  output = str(tmp_path / "out" / "report.md")
  result = _report(f"--from={attack},{plain},{prune},{empty}",
                   f"--output={output}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "report of 4 run(s) written" in result.stdout
  with open(output) as f:
    text = f.read()
  assert ("| omniglot_attack_a | backdoor accuracy, attack training (round 2) "
          "| 75.0% | 78% |") in text
  assert "attack validation (round 5) | 45.0% | ~50%" in text
  assert ("meta-test accuracy before the attack (round 0) | 99.0% | > 99%"
          in text)
  assert "| plain | meta_test_accuracy | 75.0% |  |" in text
  assert "| prune | attack success | 99.7% | 99.7% -> 1.9%" in text
  assert "| empty | (no summary.json or metrics.csv yet) |" in text
  assert "![omniglot_attack_a: experiment1.png](../omniglot_attack_a/" \
         "experiment1.png)" in text
  assert "| stage |" in text


def test_missing_run_dir_is_a_usage_error(tmp_path):
  result = _report(f"--from={tmp_path / 'nope'}")
  assert result.returncode == 2 and "does not exist" in result.stderr
  assert "Traceback" not in result.stderr
