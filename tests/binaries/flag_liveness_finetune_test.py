"""Every flag of binaries.finetune (Experiment 2) takes effect on its curves.

For each flag that feeds the fine-tuning, one tiny Experiment 2 run with the
flag changed must write different curves than the baseline run, both from
copies of one tiny attacked run (tests/binaries/flag_liveness.py).
"""

import pytest

from binaries import finetune
from tests.binaries import flag_liveness as fl

Change = fl.Change

# Client 1 fine-tunes one case-(b) episode for 2 steps, scored every 2.
BASE = {"from": "{attack_run}", "steps": 2, "curve_every": 2, "episodes": 1,
        "cases": ["b"], "clients": ["1"], "parallelism": 1}
CONTEXTS = {"base": BASE}

LIVE = {
    "from": [Change({"from": "{other_attack_run}"})],
    "steps": [Change({"steps": 4})],
    "curve_every": [Change({"curve_every": 1})],
    "episodes": [Change({"episodes": 2})],
    "cases": [Change({"cases": ["c"]})],
    "clients": [Change({"clients": ["2"]})],
    "checkpoint": [Change({"checkpoint": "pretrained"})],
    "precision": [Change({"precision": "mixed_bfloat16"})],
}

EXEMPT = {
    "finetune_shots": "another K writes finetune_k<K>/, so these outputs cannot compare "
             "it; tests/binaries/attack_binaries_test.py checks that the run's "
             "own K gives finetune/'s curves and another K other ones",
    "progress": "what the terminal shows while the run runs",
    "overwrite": "whether finished units of an earlier run are redone; each "
                 "unit's curve is the same either way",
    "eval_formulation": "how evaluation episodes are fine-tuned (one at a "
                        "time or stacked), not what: equal results to float "
                        "tolerance (tests/evaluation/batched_eval_test.py); "
                        "tests/binaries/eval_formulation_test.py checks it "
                        "reaches the evaluations",
    "parallelism": "episodes fine-tuned at once; streams give the sequential "
                   "results (tests/parallel_test.py)",
}

OUTPUTS = ("finetune/*.csv",)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """run(name, values) -> outputs, each from a fresh copy of its --from run."""
  root = str(tmp_path_factory.mktemp("liveness_finetune"))
  paths = {"attack_run": fl.attack_run(),
           "other_attack_run": fl.attack_run("other", seed=1)}
  with fl.fast_tiny_runs():
    yield fl.from_run_runner(root, finetune.main, "finetune", paths, OUTPUTS)


def test_every_flag_is_classified():
  fl.check_classified(fl.binary_flags(finetune), LIVE, EXEMPT)


@pytest.mark.parametrize("flag,change", fl.params(LIVE))
def test_flag_changes_the_output(run, flag, change):
  fl.check_flag(run, CONTEXTS, flag, change)


# Last: the baseline re-run after every other run equals the first one, so
# no result above depends on what ran before it in this process.
def test_baseline_is_reproducible(run):
  assert run("base", BASE) == run("base_again", BASE)
