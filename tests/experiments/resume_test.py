"""Experiments 1-3 resume after a crash with identical results (issue #7).

A run is interrupted by an exception at a chosen point (standing in for a
kill: nothing after the last completed unit is trusted), then re-run with
the same configuration. Its metrics and final model must equal those of an
uninterrupted run, and finished units must not be recomputed.
"""

import dataclasses
import filecmp
import os

import numpy as np
import pytest

from fedmeta_tf.attacks import backdoor_data as bd
from fedmeta_tf.attacks import backdoor_reptile
from fedmeta_tf.data import class_pool
from fedmeta_tf.experiments import defend as defend_experiment
from fedmeta_tf.evaluation import backdoor as backdoor_eval
from fedmeta_tf.evaluation import meta_test
from fedmeta_tf.experiments import backdoor_attack
from fedmeta_tf.experiments import finetune
from fedmeta_tf.experiments import runners
from fedmeta_tf.experiments import training
from fedmeta_tf.meta import reptile_tf
from tests.conftest import tiny_pool


class Crash(Exception):
  pass


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
  archive = str(tmp_path_factory.mktemp("data") / "tiny.npz")
  class_pool.save_class_pool_archive(tiny_pool(num_classes=40, examples=20),
                                     archive)
  train = training.TrainingConfig(
      dataset="archive", data_dir=archive, rounds=3,
      runtime=training.Runtime.INPROCESS, filters=4,
      reptile=reptile_tf.ReptileConfig(iterations=1, meta_batch=2,
                                       inner_steps=2),
      evaluation=meta_test.EvalConfig(steps=2, episodes=2))
  attack = backdoor_attack.AttackConfig(
      attacker=backdoor_reptile.AttackerConfig(iterations=2, inner_steps=3,
                                               keyed_last_steps=1),
      pretrain_rounds=2, eval_episodes=2,
      backdoor=bd.BackdoorConfig(case=bd.Case.B))
  return train, attack


def _crash_runner_after(monkeypatch, calls):
  """Makes the runner's `next` raise on its `calls`+1-th call."""
  make_runner = runners.make_runner

  def crashing_make_runner(*args, **kwargs):
    runner = make_runner(*args, **kwargs)
    original, count = runner.next, [0]

    def next_or_crash(state, clients):
      count[0] += 1
      if count[0] > calls:
        raise Crash(f"killed in call {count[0]}")
      return original(state, clients)

    runner.next = next_or_crash
    return runner

  monkeypatch.setattr(runners, "make_runner", crashing_make_runner)


@pytest.fixture(scope="module")
def uninterrupted(configs, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("uninterrupted"))
  backdoor_attack.run_attack_experiment(*configs, out)
  return out


# Calls 1-2 are pre-training rounds, 3 is the attack round (round 1).
@pytest.mark.parametrize("completed_calls", [1, 3])
def test_attack_experiment_resumes_to_identical_results(
    configs, uninterrupted, tmp_path, monkeypatch, completed_calls):
  out = str(tmp_path / "run")
  with monkeypatch.context() as patch:
    _crash_runner_after(patch, completed_calls)
    with pytest.raises(Crash):
      backdoor_attack.run_attack_experiment(*configs, out)
  # The re-run may do only the rounds after the crash.
  _crash_runner_after(monkeypatch, 5 - completed_calls)
  summary = backdoor_attack.run_attack_experiment(*configs, out)
  assert [r["round"] for r in summary["metrics"]] == [0, 1, 2, 3]
  for name in ("metrics.csv", "pretrain_metrics.csv"):
    assert filecmp.cmp(os.path.join(out, name),
                       os.path.join(uninterrupted, name), shallow=False), name
  for name in ("attacked", "final"):
    for a, b in zip(backdoor_attack.load_weights(out, name),
                    backdoor_attack.load_weights(uninterrupted, name)):
      np.testing.assert_array_equal(a, b)


def test_finished_attack_experiment_is_not_redone(configs, uninterrupted,
                                                  monkeypatch):
  _crash_runner_after(monkeypatch, 0)  # any round would crash
  summary = backdoor_attack.run_attack_experiment(*configs, uninterrupted)
  assert len(summary["metrics"]) == 4


def _count_curves(monkeypatch, fail_after=None):
  calls = []
  curves = backdoor_eval.BackdoorEvaluator.curves

  def counting(self, *args, **kwargs):
    if fail_after is not None and len(calls) >= fail_after:
      raise Crash("killed")
    calls.append(1)
    return curves(self, *args, **kwargs)

  monkeypatch.setattr(backdoor_eval.BackdoorEvaluator, "curves", counting)
  return calls


def test_finetune_resumes_at_the_first_unfinished_client(uninterrupted,
                                                         monkeypatch):
  config = finetune.FinetuneConfig(steps=2, curve_every=1, episodes=1)
  # Cases b and c for benign clients 1, 2, 3: six units.
  with monkeypatch.context() as patch:
    _count_curves(patch, fail_after=4)
    with pytest.raises(Crash):
      finetune.run_finetune(uninterrupted, config)
  calls = _count_curves(monkeypatch)
  finetune.run_finetune(uninterrupted, config)
  assert len(calls) == 2
  resumed = {c: open(os.path.join(uninterrupted, "finetune",
                                  f"finetune_case_{c}.csv")).read()
             for c in "bc"}
  finetune.run_finetune(uninterrupted, config, overwrite=True)
  assert len(calls) == 8  # --overwrite recomputes all six
  for c in "bc":
    with open(os.path.join(uninterrupted, "finetune",
                           f"finetune_case_{c}.csv")) as f:
      assert f.read() == resumed[c]


def test_defend_reuses_finished_units(uninterrupted, monkeypatch):
  config = defend_experiment.DefendConfig(
      defense="supervised", deltas=(0.3,), steps=2, curve_every=1, episodes=1,
      cases=("b",), clients=(1, 2), export=False)
  with monkeypatch.context() as patch:
    _count_curves(patch, fail_after=1)
    with pytest.raises(Crash):
      defend_experiment.run_defend(uninterrupted, config)
  calls = _count_curves(monkeypatch)
  summary = defend_experiment.run_defend(uninterrupted, config)
  assert len(calls) == 3  # 2 clients x (attacked, unattacked baseline) - 1
  keys = {"delta0.3/b/client1", "delta0.3/b/client2"}
  assert set(summary["final"]) == set(summary["unattacked_final"]) == keys


def test_defense_baseline_is_the_defense_of_the_unattacked_model(
    uninterrupted):
  """The unattacked baseline equals a defense run from the pre-trained
  checkpoint: same episodes, same noise, only the model differs."""
  config = defend_experiment.DefendConfig(
      defense="matching", deltas=(0.3,), steps=2, head_only_steps=1,
      curve_every=1, episodes=1, cases=("b",), clients=(1,), export=False,
      name="baseline_check")
  attacked = defend_experiment.run_defend(uninterrupted, config)
  pretrained = defend_experiment.run_defend(
      uninterrupted, dataclasses.replace(config, checkpoint="pretrained",
                                         name="from_pretrained"))
  assert "unattacked_final" not in pretrained
  def flat(final):
    return {(k, m): v for k, values in final.items() for m, v in values.items()}
  assert flat(attacked["unattacked_final"]) == pytest.approx(
      flat(pretrained["final"]))
  assert not all(np.array_equal(a, b) for a, b in zip(  # two models
      backdoor_attack.load_weights(uninterrupted, "attacked"),
      backdoor_attack.load_weights(uninterrupted, "pretrained")))
  out = os.path.join(uninterrupted, "defend", "baseline_check")
  assert os.path.isfile(os.path.join(out, "unattacked_delta0.3_case_b.csv"))
  assert os.path.isfile(os.path.join(out, "delta0.3.png"))
