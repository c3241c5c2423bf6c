"""Every flag of binaries.defend (Experiment 3) takes effect on its results.

For each flag that feeds the local defense (Algorithm 2: Glorot mix, then
fine-tuning with a matching-network / ProtoNet / dense head), one tiny run
with the flag changed must write different curves or models than the
baseline run, both from copies of one tiny attacked run
(tests/binaries/flag_liveness.py).
"""

import pytest

from binaries import defend
from tests.binaries import flag_liveness as fl

Change = fl.Change

# Client 1 defends one episode of case (b) for 3 steps (1 head-only),
# scored at 0 and 3; --name pins the output directory whatever the defense.
BASE = {"from": "{attack_run}", "steps": 3, "head_only_steps": 1,
        "curve_every": 3, "episodes": 1, "clients": ["1"], "cases": ["b"],
        "name": "live", "parallelism": 1}
CONTEXTS = {
    "base": BASE,
    # --head_only_steps, --leave_one_out and --initial_scale are refused
    # with --defense=supervised (tests/binaries/ignored_flags_test.py): it
    # is left at its default, 5, which needs 5 steps.
    "no_head_only": dict({k: v for k, v in BASE.items()
                          if k != "head_only_steps"}, steps=5),
    # --auto_delta_ratio is refused unless --deltas names auto (ours, not
    # the paper's: fedmeta_tf/defenses/local/auto_delta.py).
    "auto": dict(BASE, deltas=["auto"]),
}

LIVE = {
    "from": [Change({"from": "{other_attack_run}"})],
    "defense": [Change({"defense": "protonet"}),
                Change({"defense": "supervised"}, "no_head_only")],
    "deltas": [Change({"deltas": ["0.6"]})],
    "auto_delta_ratio": [Change({"auto_delta_ratio": 1.0}, "auto")],
    "steps": [Change({"steps": 2})],
    "head_only_steps": [Change({"head_only_steps": 2})],
    "batch": [Change({"batch": 2})],
    "learning_rate": [Change({"learning_rate": 0.1})],
    "curve_every": [Change({"curve_every": 1})],
    "local_meta_iterations": [Change({"local_meta_iterations": 1})],
    "leave_one_out": [Change({"leave_one_out": False})],
    "initial_scale": [Change({"initial_scale": 2.0})],
    "export": [Change({"export": False})],
    "episodes": [Change({"episodes": 2})],
    "cases": [Change({"cases": ["c"]})],
    "clients": [Change({"clients": ["2"]})],
    "checkpoint": [Change({"checkpoint": "pretrained"})],
    "precision": [Change({"precision": "mixed_bfloat16"})],
}

EXEMPT = {
    "progress": "what the terminal shows while the run runs",
    "name": "the output directory's name",
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

OUTPUTS = ("defend/live/*.csv", "names:defend/live/saved_model/**")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """run(name, values) -> outputs, each from a fresh copy of its --from run."""
  root = str(tmp_path_factory.mktemp("liveness_defend"))
  paths = {"attack_run": fl.attack_run(),
           "other_attack_run": fl.attack_run("other", seed=1)}
  with fl.fast_tiny_runs():
    yield fl.from_run_runner(root, defend.main, "defend", paths, OUTPUTS)


def test_every_flag_is_classified():
  fl.check_classified(fl.binary_flags(defend), LIVE, EXEMPT)


@pytest.mark.parametrize("flag,change", fl.params(LIVE))
def test_flag_changes_the_output(run, flag, change):
  fl.check_flag(run, CONTEXTS, flag, change)


# Last: the baseline re-run after every other run equals the first one, so
# no result above depends on what ran before it in this process.
def test_baseline_is_reproducible(run):
  assert run("base", BASE) == run("base_again", BASE)
