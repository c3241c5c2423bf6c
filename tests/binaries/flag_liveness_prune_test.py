"""Every flag of binaries.prune takes effect on the pruning defense's results.

For each flag that feeds the federated pruning defense (pruning paper,
Section IV: vote, prune, adjust extreme weights, fine-tune), one run with
the flag changed must write different stages, curves or weights than the
baseline run (tests/binaries/flag_liveness.py). The defended runs are a tiny
supervised FedAvg run (train_supervised) and, for the flags that only
meta-learning runs read, a tiny Experiment 1 run. The prune runs share one
subprocess: prune's flags clash with train_fedmeta's in one process.
"""

import os

import pytest

from fedmeta_tf.data import class_pool
from tests.binaries import flag_liveness as fl
from tests.conftest import tiny_pool

Change = fl.Change

# Ranking vote, 2 channels per pruning step, Delta 3, 2, 1.
BASE = {"from": "{supervised_run}", "prune_step": 2, "delta_max": 3.0,
        "delta_min": 1.0, "delta_step": 1.0, "accuracy_drop": 0.05}
CONTEXTS = {
    "base": BASE,
    "majority": dict(BASE, vote="majority"),
    "meta": dict(BASE, **{"from": "{attack_run}", "eval_episodes": 2}),
}

# Not a dead flag (defense.py reads config.delta_drop and config.stop_rule):
# the tiny runs' accuracy curves (supervised and meta) fall in one step or
# not at all, so no value of these tells the stop points apart. Needs a run
# whose accuracy declines gradually under pruning / Delta.
_FLAT = ("the tiny runs' accuracy curves cannot separate the values; flag "
         "not dead (issue 15)")

LIVE = {
    "from": [Change({"from": "{other_supervised_run}"})],
    "vote": [Change({"vote": "majority"})],
    "pruning_rate": [Change({"pruning_rate": 0.9}, "majority")],
    "accuracy_drop": [Change({"accuracy_drop": 0.5})],
    "delta_accuracy_drop": [Change({"delta_accuracy_drop": 0.5}, "meta",
                                   xfail=_FLAT)],
    "prune_step": [Change({"prune_step": 1})],
    "delta_max": [Change({"delta_max": 2.0})],
    "delta_min": [Change({"delta_min": 2.0})],
    "delta_step": [Change({"delta_step": 0.5})],
    "stop_metric": [Change({"stop_metric": "client_accuracy"})],
    "stop_rule": [Change({"stop_rule": "consecutive"}, "meta",
                         xfail=_FLAT)],
    "fine_tune_rounds": [Change({"fine_tune_rounds": 1})],
    "prune_neurons": [Change({"prune_neurons": False})],
    "checkpoint": [Change({"checkpoint": "pretrained"}, "meta")],
    "eval_episodes": [Change({"eval_episodes": 3}, "meta")],
}

EXEMPT = {
    "progress": "what the terminal shows while the run runs",
    "output_subdir": "the results directory's name",
    "paper_table": "the paper's figures beside a sweep's rows, refused for "
                   "one run (tests/supervised/mnist_sweep_test.py)",
}

OUTPUTS = ("*.csv", "weights.npz")

SUPERVISED = dict(
    dataset="archive", runtime="inprocess", parallelism=1, num_labels=4,
    num_clients=4, labels_per_client=2, clients_per_round=3, rounds=2,
    epochs=1, train_copies=2, test_copies=2, filters=["4", "4", "8"],
    hidden=["8"], source_label=1, target_label=0, head="gap")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  """The defended runs, then every prune run in one subprocess."""
  root = tmp_path_factory.mktemp("liveness_prune")
  archive = str(root / "pool.npz")
  class_pool.save_class_pool_archive(tiny_pool(num_classes=12, examples=20),
                                     archive)
  trained = fl.run_in_subprocess("train_supervised", {
      name: dict(SUPERVISED, data_dir=archive, seed=seed,
                 root_output_dir=str(root), experiment_name=name,
                 run_dir=str(root / name))
      for name, seed in (("supervised", 0), ("other_supervised", 1))},
                                 ("weights.npz",), str(root))
  assert not trained["errors"], trained["errors"]
  attack_run = fl.attack_run()
  paths = {"supervised_run": str(root / "supervised"),
           "other_supervised_run": str(root / "other_supervised"),
           "attack_run": attack_run}
  runs = dict(CONTEXTS)
  for flag, change in (p.values for p in fl.params(LIVE)):
    runs[change.run_name(flag)] = dict(CONTEXTS[change.context],
                                       **change.flags)
  runs["base_again"] = BASE  # last: no result depends on what ran before
  spec = {}
  for name, values in runs.items():
    values = fl.resolve(values, paths)
    spec[name] = dict(values, output_subdir=f"pruning_{name}",
                      run_dir=os.path.join(values["from"], f"pruning_{name}"))
  return fl.run_in_subprocess("prune", spec, OUTPUTS, str(root))


def test_every_flag_is_classified(results):
  fl.check_classified(set(results["flags"]), LIVE, EXEMPT)


def test_baseline_is_reproducible(results):
  fl.check_results_reproducible(results)


@pytest.mark.parametrize("flag,change", fl.params(LIVE))
def test_flag_changes_the_output(results, flag, change):
  fl.check_flag_in_results(results, flag, change)
