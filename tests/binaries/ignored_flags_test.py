"""Settings that would have no effect are refused, not silently ignored.

One test per refused flag: the binary exits with status 2 and one line on
stderr naming the flag and what would be valid, before it loads data or
writes anything (the run directory stays empty). A flag counts as set when
it holds a value other than its default, on the command line, in a
--flagfile (checked with a real command line) or assigned in code.
"""

import os
import subprocess
import sys

from absl import flags
from absl.testing import flagsaver
import pytest

from binaries import defend
from binaries import train_fedmeta
from tests.binaries.train_fedmeta_test import REPO
from tests.binaries.train_fedmeta_test import tiny_flags
from tests.conftest import tiny_archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
  return tiny_archive(tmp_path_factory.mktemp("data"))


def _files(root):
  return sorted(os.path.join(d, n) for d, _, names in os.walk(root)
                for n in names)


def _assert_refused(capsys, exit_info, must_name, valid):
  err = capsys.readouterr().err.strip()
  assert exit_info.value.code == 2
  assert len(err.splitlines()) == 1 and "Traceback" not in err, err
  assert must_name in err and "has no effect" in err, err
  assert valid in err, err


# --- train_fedmeta ----------------------------------------------------------

# An attack run that would be valid without the refused flag:
# --eval_episodes equals --backdoor_eval_episodes (the only value that is
# not ignored).
_ATTACK = dict(attack="boosted", pretrain_rounds=1, attacker_iterations=1,
               attacker_inner_steps=1, backdoor_eval_episodes=2,
               runtime="inprocess")


def _refused_train_fedmeta(archive, root, capsys, must_name, valid,
                           **overrides):
  values = tiny_flags(archive, root, **_ATTACK)
  values.update(overrides)
  capsys.readouterr()
  with flagsaver.flagsaver(**values):
    with pytest.raises(SystemExit) as exit_info:
      train_fedmeta.main(["train_fedmeta"])
  _assert_refused(capsys, exit_info, must_name, valid)
  assert not _files(root)


@pytest.mark.parametrize("must_name, valid, overrides", [
    pytest.param("--dropout_rate=0.5 has no effect with --attack=boosted",
                 "--attack=none", dict(dropout_rate=0.5),
                 id="dropout_rate_with_an_attack"),
    pytest.param("--dropout_policy=skip has no effect with "
                 "--attack=model_replacement", "--attack=none",
                 dict(attack="model_replacement", dropout_policy="skip"),
                 id="dropout_policy_with_an_attack"),
    pytest.param("--eval_episodes=7 has no effect with --attack=boosted",
                 "--backdoor_eval_episodes=2", dict(eval_episodes=7),
                 id="eval_episodes_with_an_attack"),
    pytest.param("--key_margin=3 has no effect with --key_position=center",
                 "bottom_right", dict(key_position="center", key_margin=3),
                 id="key_margin_with_a_centred_key"),
    pytest.param("--key_size=6 has no effect with --key=hat", "--key=stamp",
                 dict(key="hat", key_size=6), id="key_size_with_the_hat_key"),
    pytest.param("--attacker_inner_epochs=2", "give one",
                 dict(attacker_inner_epochs=2),
                 id="attacker_inner_epochs_beside_inner_steps"),
    pytest.param("--client_chunk=3 has no effect with --runtime=tff",
                 "--runtime=inprocess", dict(runtime="tff", client_chunk=3),
                 id="client_chunk_with_the_tff_runtime"),
])
def test_train_fedmeta_refuses(archive, tmp_path, capsys, must_name, valid,
                               overrides):
  _refused_train_fedmeta(archive, str(tmp_path), capsys, must_name, valid,
                         **overrides)


def test_a_default_value_is_not_refused():
  # A flagfile shared by several settings may name a default (the refusal
  # looks at values, not at where a flag was written).
  with flagsaver.flagsaver(attack="boosted", dropout_rate=0.0,
                           dropout_policy="wait", key_position="center",
                           key_margin=1, eval_episodes=100,
                           backdoor_eval_episodes=40):
    train_fedmeta.check_flags_take_effect()


def test_a_flag_set_in_a_flagfile_is_refused(archive, tmp_path):
  flagfile = tmp_path / "attack.cfg"
  flagfile.write_text("--attack=boosted\n--dropout_rate=0.25\n")
  root = tmp_path / "runs"
  root.mkdir()
  result = subprocess.run(
      [sys.executable, "-m", "binaries.train_fedmeta",
       f"--flagfile={flagfile}", "--dataset=archive", f"--data_dir={archive}",
       f"--root_output_dir={root}"],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert result.returncode == 2, result.stderr[-2000:]
  lines = [l for l in result.stderr.splitlines() if "error" in l]
  assert len(lines) == 1, result.stderr
  assert "--dropout_rate=0.25 has no effect" in lines[0], result.stderr
  assert "Traceback" not in result.stderr
  assert not _files(root)


# --- defend -----------------------------------------------------------------

@pytest.mark.parametrize("flag,value,shown", [
    ("head_only_steps", 2, "--head_only_steps=2"),
    ("leave_one_out", False, "--noleave_one_out"),
    ("initial_scale", 2.0, "--initial_scale=2.0"),
])
def test_metric_head_flags_with_the_supervised_defense(tmp_path, capsys, flag,
                                                       value, shown):
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  capsys.readouterr()
  with flagsaver.flagsaver(defense="supervised", **{flag: value}):
    flags.FLAGS["from"].value = str(run_dir)
    with pytest.raises(SystemExit) as exit_info:
      defend.main(["defend"])
  _assert_refused(capsys, exit_info,
                  f"{shown} has no effect with --defense=supervised",
                  "--defense=matching")
  assert not _files(run_dir)


# --- prune (its flags clash with train_fedmeta's: a process of its own) ----

def test_pruning_rate_with_the_ranking_vote(tmp_path):
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  flagfile = tmp_path / "prune.cfg"
  flagfile.write_text("--pruning_rate=0.9\n")
  result = subprocess.run(
      [sys.executable, "-m", "binaries.prune", f"--from={run_dir}",
       f"--flagfile={flagfile}"],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert result.returncode == 2, result.stderr[-2000:]
  lines = [l for l in result.stderr.splitlines() if "error" in l]
  assert len(lines) == 1, result.stderr
  assert ("--pruning_rate=0.9 has no effect with --vote=ranking"
          in lines[0]), result.stderr
  assert "--vote=majority" in lines[0]
  assert "Traceback" not in result.stderr
  assert not _files(run_dir)
