"""One writer per run directory (binaries.common.lock_run_dir).

The same command launched twice into one run directory (a double-click, a
re-submitted job): the second process refuses with one line naming the
directory and the first one's process id, exit status 2, and writes
nothing; the first one's results are those of a run started alone.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from binaries import common
from binaries import precision_flag
from tests.binaries.train_fedmeta_test import tiny_flags
from tests.conftest import snapshot_files
from tests.conftest import tiny_attack_configs
from tests.conftest import tiny_test_set
from tests.conftest import tiny_archive

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _env():
  """A deterministic run's environment (tests/experiments/killed_runs.py),
  with TensorFlow's C++ start-up lines silenced."""
  return dict(os.environ, TF_DETERMINISTIC_OPS="1", TF_CPP_MIN_LOG_LEVEL="3")


# --- lock_run_dir -----------------------------------------------------------

# A child process that takes the lock through the same function, says so,
# and holds it until killed.
_HOLD = textwrap.dedent("""\
    import sys, time
    from binaries import common
    common.lock_run_dir(sys.argv[1])
    print("locked", flush=True)
    time.sleep(600)
    """)

# A child process that tries to take the lock: exit 0 (taken) or 3 (refused,
# the message on stdout).
_TRY = textwrap.dedent("""\
    import sys
    from binaries import common
    try:
      common.lock_run_dir(sys.argv[1])
    except ValueError as e:
      print(e)
      sys.exit(3)
    """)


def _hold_in_child(directory):
  proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(directory)],
                          cwd=REPO, stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "locked"
  return proc


def _try_in_child(directory):
  return subprocess.run([sys.executable, "-c", _TRY, str(directory)],
                        cwd=REPO, capture_output=True, text=True, timeout=60)


def test_lock_held_by_another_process_is_refused_until_it_is_killed(tmp_path):
  run_dir = str(tmp_path / "runs" / "x")
  holder = _hold_in_child(run_dir)
  try:
    with pytest.raises(ValueError) as refused:
      common.lock_run_dir(run_dir)
    message = str(refused.value)
    assert len(message.splitlines()) == 1, message
    assert f"run directory {run_dir!r} is in use by process {holder.pid}" in (
        message), message
    assert "choose another --experiment_name" in message
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  # kill -9 leaves the lock file, but no lock: the kernel released it.
  assert os.path.isfile(os.path.join(run_dir, common.LOCK_FILE))
  with common.lock_run_dir(run_dir) as lock:
    assert lock.held
    with open(lock.path) as f:
      assert f.read().strip() == str(os.getpid())
    # A second open conflicts even in the holding process.
    with pytest.raises(ValueError, match=f"in use by process {os.getpid()}"):
      common.lock_run_dir(run_dir)
  assert _try_in_child(run_dir).returncode == 0  # released


def test_overwrite_empties_the_directory_but_keeps_the_lock(tmp_path):
  run_dir = str(tmp_path / "x")
  with common.lock_run_dir(run_dir) as lock:
    inode = os.stat(lock.path).st_ino
    os.makedirs(os.path.join(run_dir, "checkpoints", "round_1"))
    for name in ("metrics.csv", "summary.json", "checkpoints/round_1/w"):
      with open(os.path.join(run_dir, name), "w") as f:
        f.write("old")
    assert common.prepare_run_dir(run_dir, [], overwrite=True) is False
    assert sorted(os.listdir(run_dir)) == [".lock", "flags.json", "flags.txt",
                                           "run_info.json"]
    assert os.stat(lock.path).st_ino == inode  # the file this process locked
    refused = _try_in_child(run_dir)
    assert refused.returncode == 3, refused.stderr
    assert f"in use by process {os.getpid()}" in refused.stdout


def test_user_errors_exit_2_releases_the_locks_main_took(tmp_path, capsys):
  run_dir = str(tmp_path / "x")

  @common.user_errors_exit_2
  def main(argv):
    common.lock_run_dir(run_dir)
    if len(argv) > 1:
      raise ValueError("bad")

  main(["main"])
  common.lock_run_dir(run_dir).release()  # not held any more
  with pytest.raises(SystemExit) as exit_info:
    main(["main", "extra"])
  assert exit_info.value.code == 2
  assert capsys.readouterr().err.strip().endswith("error: bad")
  common.lock_run_dir(run_dir).release()


# --- train_fedmeta launched twice at once -----------------------------------

# Long enough (several seconds of rounds after the lock) that the second
# process, started at the same moment, reaches the lock while the first one
# still holds it.
_RUN = dict(runtime="inprocess", rounds=4, episodes_per_round=6)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
  return tiny_archive(tmp_path_factory.mktemp("data"))


def _train_fedmeta(archive, root):
  return [sys.executable, "-m", "binaries.train_fedmeta"] + [
      f"--{k}={v}" for k, v in tiny_flags(archive, root, **_RUN).items()]


def _rows(path):
  with open(path, newline="") as f:
    return list(csv.reader(f))


def _error_lines(stderr):
  """The lines a binary's one-line refusal could be."""
  return [l for l in stderr.splitlines() if "error" in l.lower()]


def test_two_processes_at_once_one_refuses_and_metrics_are_a_single_runs(
    archive, tmp_path):
  alone = tmp_path / "alone"
  subprocess.run(_train_fedmeta(archive, alone), cwd=REPO, env=_env(),
                 check=True, capture_output=True, timeout=300)

  race = tmp_path / "race"
  procs = [subprocess.Popen(_train_fedmeta(archive, race), cwd=REPO,
                            env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  try:
    outputs = [p.communicate(timeout=300) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  codes = [p.returncode for p in procs]
  assert sorted(codes) == [0, 2], (codes, [err[-3000:] for _, err in outputs])
  winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
  err = outputs[loser][1]
  lines = _error_lines(err)
  assert len(lines) == 1 and "Traceback" not in err, err
  run_dir = f"{race}/tiny"
  assert lines[0] == (
      f"train_fedmeta: error: run directory {run_dir!r} is in use by process "
      f"{procs[winner].pid} (another run is writing it); wait for it to "
      "finish or choose another --experiment_name"), lines[0]
  # The winner's results are those of a run alone: no round written twice.
  assert (_rows(race / "tiny" / "metrics.csv") ==
          _rows(alone / "tiny" / "metrics.csv"))
  assert json.loads((race / "tiny" / "summary.json").read_text())["rounds"] == 4


# --- the other binaries refuse a held directory -----------------------------

@pytest.fixture(scope="module")
def attack_run(tmp_path_factory):
  """An Experiment 1 run directory as far as the binaries read it before
  they lock: experiment.json (the lock comes before the model is loaded)."""
  from fedmeta_tf.experiments import attack_config  # pylint: disable=g-import-not-at-top
  from fedmeta_tf.experiments import backdoor_attack  # pylint: disable=g-import-not-at-top
  run_dir = tmp_path_factory.mktemp("attack_run")
  config, attack = tiny_attack_configs(str(run_dir / "pool.npz"))
  (run_dir / backdoor_attack.EXPERIMENT_JSON).write_text(json.dumps({
      "training": attack_config.to_jsonable(config),
      "attack": attack_config.to_jsonable(attack)}))
  backdoor_attack.load_run(str(run_dir))  # what finetune and defend check
  return str(run_dir)


@pytest.mark.parametrize("binary", ["finetune", "defend", "prune",
                                    "train_supervised"])
def test_binary_refuses_a_directory_another_process_writes(
    binary, attack_run, archive, tmp_path):
  # (arguments, the directory the binary writes, what else the user can do)
  args, run_dir, alternative = {
      "finetune": ([f"--from={attack_run}"], f"{attack_run}/finetune", ""),
      "defend": ([f"--from={attack_run}", "--name=held"],
                 f"{attack_run}/defend/held", " or choose another --name"),
      "prune": ([f"--from={attack_run}"], os.path.join(attack_run, "pruning"),
                " or choose another --output_subdir"),
      # (The data is checked before the lock: MNIST-layout test files.)
      "train_supervised": (
          ["--dataset=mnist", f"--data_dir={tiny_test_set(tmp_path / 'mnist')}",
           f"--root_output_dir={tmp_path / 'runs'}", "--experiment_name=sup"],
          f"{tmp_path}/runs/sup", " or choose another --experiment_name"),
  }[binary]
  with common.lock_run_dir(run_dir):
    tree = os.path.dirname(run_dir)
    before = snapshot_files(tree)
    result = subprocess.run([sys.executable, "-m", f"binaries.{binary}"] + args,
                            cwd=REPO, env=_env(), capture_output=True,
                            text=True, timeout=300)
    assert snapshot_files(tree) == before  # nothing written
  assert result.returncode == 2, result.stderr[-3000:]
  lines = _error_lines(result.stderr)
  assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
  assert lines[0] == (
      f"{binary}: error: run directory {run_dir!r} is in use by process "
      f"{os.getpid()} (another run is writing it); wait for it to finish"
      f"{alternative}"), lines[0]


def test_run_info_records_command_machine_and_commit(tmp_path, monkeypatch):
  monkeypatch.setattr(sys, "argv", ["/x/binaries/train_fedmeta.py",
                                    "--flagfile=configs/glyphs.cfg",
                                    "--experiment_name=a b"])
  common.write_run_info(str(tmp_path))
  with open(tmp_path / "run_info.json") as f:
    info = json.load(f)
  assert info["command"] == ("python -m binaries.train_fedmeta "
                             "--flagfile=configs/glyphs.cfg "
                             "'--experiment_name=a b'")
  assert info["machine"].startswith("machine: ") and "cores" in info["machine"]
  assert set(info) == {"command", "machine", "commit", "started_utc"}


def test_a_flag_added_since_the_run_counts_at_its_default(tmp_path):
  modules = [precision_flag.__name__]
  run_dir = str(tmp_path / "x")
  os.makedirs(run_dir)
  flags_path = os.path.join(run_dir, "flags.json")
  with open(flags_path, "w") as f:
    json.dump({}, f)  # written before --precision existed
  assert common.prepare_run_dir(run_dir, modules, overwrite=False) is False
  with open(flags_path) as f:
    assert json.load(f) == {"precision": "float32"}
  with open(flags_path, "w") as f:
    json.dump({"precision": "mixed_bfloat16"}, f)
  with pytest.raises(ValueError, match="flags differ: --precision"):
    common.prepare_run_dir(run_dir, modules, overwrite=False)
