"""Every flag of binaries.train_supervised takes effect on what a run computes.

For each flag that feeds supervised FedAvg with backdoor attackers (the
pruning paper's Section III), one tiny run with the flag changed must write
different weights or metrics than the baseline run
(tests/binaries/flag_liveness.py). The runs share one subprocess:
train_supervised's flags clash with train_fedmeta's in one process.
"""

import pytest

from fedmeta_tf.data import class_pool
from tests.binaries import flag_liveness as fl
from tests.conftest import tiny_pool

Change = fl.Change

# 4 labels over 4 clients (2 each), 3 per round, 2 rounds of 1 epoch; client
# 0 (holding label 1) plants the pixel key from round 1.
BASE = dict(
    dataset="archive", data_dir="{archive}", runtime="inprocess",
    parallelism=1, num_labels=4, num_clients=4, labels_per_client=2,
    clients_per_round=3, rounds=2, epochs=1, train_copies=2, test_copies=2,
    filters=["4", "4", "8"], hidden=["8"], source_label=1, target_label=0,
    head="gap")
CONTEXTS = {
    "base": BASE,
    # Every client every round: a second attacker is surely selected.
    "all_clients": dict(BASE, clients_per_round=4),
}

LIVE = {
    # The data and the federation.
    "dataset": [Change({"dataset": "glyphs", "data_dir": "{glyphs_dir}"})],
    "data_dir": [Change({"data_dir": "{other_archive}"})],
    "seed": [Change({"seed": 1})],
    "num_labels": [Change({"num_labels": 5})],
    "train_copies": [Change({"train_copies": 3})],
    "test_copies": [Change({"test_copies": 3})],
    "num_clients": [Change({"num_clients": 5})],
    "labels_per_client": [Change({"labels_per_client": 3})],
    "clients_per_round": [Change({"clients_per_round": 4})],
    "rounds": [Change({"rounds": 1})],
    "aggregator": [Change({"aggregator": "median"})],
    # Local SGD and the model.
    "epochs": [Change({"epochs": 2})],
    "batch_size": [Change({"batch_size": 4})],
    "learning_rate": [Change({"learning_rate": 0.2})],
    "filters": [Change({"filters": ["4", "4", "4"]})],
    "hidden": [Change({"hidden": ["6"]})],
    "head": [Change({"head": "flatten"})],
    "kernel_size": [Change({"kernel_size": 5})],
    "conv_padding": [Change({"conv_padding": "valid"})],
    # The attack.
    "attack": [Change({"attack": "none"})],
    "num_attackers": [Change({"num_attackers": 2}, "all_clients")],
    "source_label": [Change({"source_label": 2})],
    "target_label": [Change({"target_label": 2})],
    "boosting_factor": [Change({"boosting_factor": 1.0})],
    "attack_start_round": [Change({"attack_start_round": 2})],
    "poison_copies": [Change({"poison_copies": 2})],
    "key_size": [Change({"key_size": 3})],
    "key_position": [Change({"key_position": "center"})],
    "key_pixels": [Change({"key_pixels": ["1"]})],
}

EXEMPT = {
    "progress": "what the terminal shows while the run runs",
    "root_output_dir": "where the run directory is; names only",
    "experiment_name": "the run directory's name",
    # No test yet shows the two drivers' supervised results equal (they
    # are for meta-learning: tests/tff_process/process_test.py).
    "runtime": "which driver runs the same client and server functions",
    "label_pairs": "a sweep, one run per pair in sub-directories; each "
                   "run's pair and figures: tests/supervised/"
                   "mnist_sweep_test.py",
    "val_size": "refused with class pools (this test's data); the split it "
                "sizes on MNIST: tests/supervised/mnist_sweep_test.py",
    "parallelism": "clients trained at once; streams give the sequential "
                   "results (tests/parallel_test.py)",
}

OUTPUTS = ("metrics.csv", "weights.npz")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  """Every run (baseline twice, one per change) in one subprocess."""
  root = tmp_path_factory.mktemp("liveness_supervised")
  pool = tiny_pool(num_classes=12, examples=20)
  paths = {"archive": str(root / "pool.npz"),
           "other_archive": str(root / "other.npz"),
           "glyphs_dir": str(root / "glyphs_cache")}
  class_pool.save_class_pool_archive(pool, paths["archive"])
  other = tiny_pool(num_classes=12, examples=20, seed=1)
  class_pool.save_class_pool_archive(other, paths["other_archive"])
  fl.write_glyphs_cache(paths["glyphs_dir"], other)
  runs = dict(CONTEXTS)
  for flag, change in (p.values for p in fl.params(LIVE)):
    runs[change.run_name(flag)] = dict(CONTEXTS[change.context],
                                       **change.flags)
  runs["base_again"] = BASE  # last: no result depends on what ran before
  spec = {}
  for name, values in runs.items():
    spec[name] = fl.resolve(dict(values, root_output_dir=str(root),
                                 experiment_name=name,
                                 run_dir=str(root / name)), paths)
  return fl.run_in_subprocess("train_supervised", spec, OUTPUTS, str(root))


def test_every_flag_is_classified(results):
  fl.check_classified(set(results["flags"]), LIVE, EXEMPT)


def test_baseline_is_reproducible(results):
  fl.check_results_reproducible(results)


@pytest.mark.parametrize("flag,change", fl.params(LIVE))
def test_flag_changes_the_output(results, flag, change):
  fl.check_flag_in_results(results, flag, change)
