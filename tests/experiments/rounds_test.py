"""The one round loop: schedules, resume after a crash, timing, extras."""

import csv
import os

import numpy as np
import pytest

from fedmeta_tf.experiments import rounds
from fedmeta_tf.reporting import release


class Crash(Exception):
  pass


def _schedule(metrics, log, crash_at=None):
  """Round 0 (untimed), rounds 1-2 with round 2 not checkpointed (saved
  with round 3 under version 3), round 3; state = [sum of round keys]."""

  def step(key):
    def run(state):
      if key == crash_at:
        raise Crash(key)
      log.append(key)
      return state + key, {"value": float(state[0] + key)}
    return run

  return [rounds.Round(0, 0, step(0), metrics, timed=False),
          rounds.Round(1, 1, step(1), metrics),
          rounds.Round(3, 2, step(2), metrics, checkpoint=False),
          rounds.Round(3, 3, step(3), metrics)]


def _rows(path):
  with open(path) as f:
    return [(r["round"], r["value"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("crash_at", [2, 3])
def test_a_resumed_schedule_equals_an_uninterrupted_one(tmp_path, crash_at):
  full, log = str(tmp_path / "full"), []
  loop = rounds.RoundLoop(np.zeros([1]), output_dir=full, extra={"n": 0})
  state = loop.run(_schedule(release.MetricsRelease(full), log))
  assert log == [0, 1, 2, 3] and float(state[0]) == 6

  out, log = str(tmp_path / "run"), []
  loop = rounds.RoundLoop(np.zeros([1]), output_dir=out, extra={"n": 0})
  loop.extra["n"] = 7
  with pytest.raises(Crash):
    loop.run(_schedule(release.MetricsRelease(out), log, crash_at=crash_at))
  loop = rounds.RoundLoop(np.zeros([1]), output_dir=out, extra={"n": 0})
  assert loop.resumed and loop.done == 1 and loop.extra == {"n": 7}
  assert isinstance(loop.extra["n"], int)
  log.clear()
  state = loop.run(_schedule(release.MetricsRelease(out), log))
  assert log == [2, 3]  # round 2 was not saved: it runs again with round 3
  assert float(state[0]) == 6
  assert _rows(os.path.join(out, "metrics.csv")) == _rows(
      os.path.join(full, "metrics.csv"))
  with open(os.path.join(out, "timing.csv")) as f:
    assert [r["round"] for r in csv.DictReader(f)] == ["1", "3"]
  assert loop.seconds >= 0


def test_in_memory_loop_has_no_files(tmp_path):
  log = []
  loop = rounds.RoundLoop(np.zeros([1]), output_dir=None)
  state = loop.run(_schedule(None, log))
  assert float(state[0]) == 6 and log == [0, 1, 2, 3]
  assert not loop.resumed


def test_keep_model_writes_weights_atomically(tmp_path):
  path = str(tmp_path / "models" / "final.npz")
  rounds.keep_model(path, [np.ones([2]), np.zeros([3])])
  assert [a.shape for a in release.load_weights(path)] == [(2,), (3,)]
  assert os.listdir(tmp_path / "models") == ["final.npz"]
