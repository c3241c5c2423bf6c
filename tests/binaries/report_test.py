"""binaries/report.py on hand-made run directories.

Runs the binary as a subprocess: its --from flag clashes with finetune's and
defend's when imported into one pytest process (no TensorFlow: ~1 s).
"""

import json
import os
import subprocess
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_MACHINE = "machine: AMD EPYC; 2 cores online, 2 usable; 23.5 GiB RAM"
_FINETUNE_FLAGS = {"from": "runs/omniglot_attack_a", "steps": 500,
                   "curve_every": 50, "episodes": 5, "cases": ["a"]}


def _report(*args, cwd=_REPO):
  env = dict(os.environ, PYTHONPATH=_REPO)
  return subprocess.run([sys.executable, "-m", "binaries.report", *args],
                        cwd=cwd, capture_output=True, text=True, env=env,
                        timeout=120, check=False)


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text if isinstance(text, str) else json.dumps(text))


def _attack_run(root):
  """Experiment 1 from before run_info.json, with a figure."""
  run = os.path.join(root, "runs", "omniglot_attack_a")
  _write(os.path.join(run, "flags.json"),
         {"dataset": "omniglot", "attack": "boosted", "case": "a"})
  rows = [{"round": 0, "attack": 0, "meta_test_accuracy": 0.99,
           "backdoor_train_accuracy": 0.2, "backdoor_val_accuracy": 0.1},
          {"round": 1, "attack": 1, "meta_test_accuracy": 0.9,
           "backdoor_train_accuracy": 0.9, "backdoor_val_accuracy": 0.8},
          {"round": 2, "attack": 0, "meta_test_accuracy": 0.98,
           "backdoor_train_accuracy": 0.75, "backdoor_val_accuracy": 0.7},
          {"round": 5, "attack": 0, "meta_test_accuracy": 0.985,
           "backdoor_train_accuracy": 0.5, "backdoor_val_accuracy": 0.45}]
  _write(os.path.join(run, "summary.json"),
         {"case": "a", "metrics": rows, "wall_seconds": 12.0})
  _write(os.path.join(run, "experiment1.png"), "not really a png")
  _write(os.path.join(run, "tensorboard", "t.png"), "not a figure")
  return run


def _finetune_run(attack_run, flags_json, command_tail=""):
  """Experiment 2 with run_info.json naming the committed flagfile."""
  run = os.path.join(attack_run, "finetune")
  _write(os.path.join(run, "run_info.json"), {
      "command": "python -m binaries.finetune --flagfile=configs/"
                 "omniglot_finetune_cpu.cfg" + command_tail,
      "machine": _MACHINE, "commit": "8b62396abc12",
      "started_utc": "2026-12-01T00:05:11Z"})
  _write(os.path.join(run, "flags.json"), flags_json)
  final = {f"a/client{c}": {"backdoor_train_accuracy": 0.8 + c / 100,
                            "backdoor_val_accuracy": 0.7,
                            "main_task_accuracy": 1.0,
                            "meta_test_accuracy": 1.0} for c in (1, 2, 3)}
  _write(os.path.join(run, "summary.json"),
         {"steps": 500, "clients": [1, 2, 3], "final": final,
          "wall_seconds": 138.0})
  _write(os.path.join(run, "experiment2.png"), "x" * (310 * 1024))
  return run


def test_page_traces_runs_to_flagfiles_with_figures(tmp_path):
  attack = _attack_run(str(tmp_path))
  finetune = _finetune_run(attack, _FINETUNE_FLAGS)
  output = str(tmp_path / "docs" / "report.md")
  stale = tmp_path / "docs" / "report_figures" / "omniglot_attack_a"
  _write(str(stale / "old.png"), "stale")
  result = _report(f"--from={attack},{finetune}", f"--output={output}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "report of 2 run(s) written" in result.stdout
  assert "experiment2.png is 310 KB (over 300 KB)" in result.stdout
  with open(output) as f:
    text = f.read()
  assert text.index("| experiment | what | ours | paper | run |") < \
      text.index("## ")
  assert ("| Exp. 1(a), omniglot | backdoor accuracy, attack training, "
          "after the attack (round 1) | 90.0% | 78% (the paper's round 2) |"
          in text)
  assert "4 benign rounds after it (round 5) | 45.0% | ~50%" in text
  assert "meta-test accuracy before the attack (round 0) | 99.0% | > 99%" \
      in text
  assert "command not recorded (run before run_info.json existed)" in text
  assert "Wall time: 12 s" in text and "Wall time: 2 min 18 s" in text
  assert ("- Command: `python -m binaries.finetune --flagfile=configs/"
          "omniglot_finetune_cpu.cfg`") in text
  assert "- Machine: AMD EPYC; 2 cores online" in text
  assert "Commit: 8b62396abc12" in text
  assert ("Flagfile `configs/omniglot_finetune_cpu.cfg` as committed: all 4 "
          "flags agree with the run's flags.json") in text
  assert ("case (a), backdoor accuracy, attack training after 500 "
          "iterations, users 2 / 3 / 4 | 81.0% / 82.0% / 83.0% | > 80%") in text
  figures = tmp_path / "docs" / "report_figures"
  assert sorted(os.listdir(figures / "omniglot_attack_a")) == [
      "experiment1.png"]  # the stale figure removed, tensorboard's skipped
  assert os.listdir(figures / "omniglot_attack_a-finetune") == [
      "experiment2.png"]
  assert ("![omniglot_attack_a: experiment1.png](report_figures/"
          "omniglot_attack_a/experiment1.png)") in text
  assert "(report_figures/omniglot_attack_a-finetune/experiment2.png)" in text


def test_differing_flags_and_overrides_are_named(tmp_path):
  attack = _attack_run(str(tmp_path))
  finetune = _finetune_run(attack, {**_FINETUNE_FLAGS, "steps": 400,
                                    "episodes": 2}, " --episodes=2")
  output = str(tmp_path / "report.md")
  result = _report(f"--from={finetune}", f"--output={output}")
  assert result.returncode == 0, result.stderr[-2000:]
  with open(output) as f:
    text = f.read()
  assert ("as committed: 2 of 3 flags the run recorded agree; differ: "
          "`--steps=500` (the run: `400`)") in text
  assert "Overrides after the flagfile on the command line: `--episodes=2`" \
      in text


def test_sweep_and_pruning_beside_table_i(tmp_path):
  sweep = tmp_path / "runs" / "mnist_table1_cpu"
  _write(str(sweep / "flags.json"), {"dataset": "mnist"})
  _write(str(sweep / "sweep.json"), {"members": [
      {"name": f"pixels{p}", "source_label": 9, "target_label": 1,
       "key_pixels": p} for p in (1, 3)]})
  stages = [{"stage": "training", "test_accuracy": 0.96,
             "attack_success": 0.98},
            {"stage": "pruning", "test_accuracy": 0.95, "attack_success": 0.9,
             "num": 20},
            {"stage": "extreme_weights", "test_accuracy": 0.94,
             "attack_success": 0.03, "num": 130}]
  for p in (1, 3):
    _write(str(sweep / f"pixels{p}" / "summary.json"),
           {"test_accuracy": 0.96, "attack_success": 0.98,
            "wall_seconds": 60.0})
    _write(str(sweep / f"pixels{p}" / "pruning" / "summary.json"),
           {"stages": stages})
    _write(str(sweep / f"pixels{p}" / "pruning" / "pruning.png"), "png")
  prune = sweep / "pruning"
  _write(str(prune / "flags.json"), {
      "output_subdir": "pruning", "vote": "Vote.RANKING",
      "stop_rule": "consecutive", "accuracy_drop": 0.01, "prune_step": 1,
      "delta_max": 3.0, "delta_min": 3.0, "delta_accuracy_drop": 1.0,
      "paper_table": "I"})
  _write(str(prune / "run_info.json"), {
      "command": "python -m binaries.prune "
                 "--flagfile=configs/mnist_table1_prune.cfg",
      "machine": _MACHINE, "commit": None})
  _write(str(prune / "table.md"), "# runs/mnist_table1_cpu (2 runs)\n\n"
         "| run | training: ours |\n|---|---|\n| pixels1 | 96.0 / 98.0 |\n")
  output = str(tmp_path / "report.md")
  result = _report(f"--from={sweep},{prune}", f"--output={output}")
  assert result.returncode == 0, result.stderr[-2000:]
  with open(output) as f:
    text = f.read()
  assert ("| pruning paper, Table I: training | pixels1: after training: "
          "test accuracy / attack success | 96.0% / 98.0% | 98.5% / 99.9% |"
          in text)
  assert ("| pruning paper, Table I: the defense | pixels3: after "
          "extreme_weights: test accuracy / attack success | 94.0% / 3.0% | "
          "97.0% / 34.8% |") in text
  assert "Wall time: 2 min 0 s (sum over its 2 runs)" in text
  assert ("Flagfile `configs/mnist_table1_prune.cfg` as committed: all 10 "
          "flags agree") in text
  assert "**runs/mnist_table1_cpu (2 runs)**" in text
  assert "| pixels1 | 96.0 / 98.0 |" in text
  assert "(report_figures/mnist_table1_cpu-pruning/pixels3-pruning.png)" \
      in text


def test_other_runs_are_shown_tolerantly(tmp_path):
  plain = str(tmp_path / "plain")  # in progress: metrics.csv only
  _write(os.path.join(plain, "metrics.csv"),
         "round,meta_test_accuracy,seconds\n0,0.5,0\n1,,3\n2,0.75,6\n")
  fashion = str(tmp_path / "fashion")
  _write(os.path.join(fashion, "flags.json"), {"dataset": "fashion_mnist"})
  _write(os.path.join(fashion, "summary.json"),
         {"attack_success": 0.997, "test_accuracy": 0.9,
          "client_labels": [[1]]})
  empty = str(tmp_path / "empty")
  os.makedirs(empty)
  output = str(tmp_path / "out" / "report.md")
  result = _report(f"--from={plain},{fashion},{empty}", f"--output={output}")
  assert result.returncode == 0, result.stderr[-2000:]
  with open(output) as f:
    text = f.read()
  assert "| plain | meta_test_accuracy | 75.0% |  | " in text
  assert "| fashion | attack success | 99.7% | 99.7% -> 1.9%" in text
  assert "| empty | (no summary.json or metrics.csv yet) |" in text
  assert not os.path.exists(tmp_path / "out" / "report_figures")


def test_missing_run_dir_names_the_flagfile_that_makes_it(tmp_path):
  result = _report("--from=runs/omniglot_attack_a/finetune",
                   f"--output={tmp_path / 'r.md'}", cwd=str(tmp_path))
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  assert "'runs/omniglot_attack_a/finetune' does not exist" in lines[0]
  assert ("python -m binaries.finetune --flagfile=configs/"
          "omniglot_finetune_cpu.cfg") in lines[0]
  assert not os.path.exists(tmp_path / "r.md")
