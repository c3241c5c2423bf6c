"""Every flag of binaries.train_fedmeta takes effect on what the run computes.

For each flag that feeds a computation, one tiny run of the binary's main()
with that flag changed must write a different global model or different
metrics than the baseline run of the same context (tests/binaries/
flag_liveness.py). A flag that reaches only a config object, or only the
client data (the dead `--attacker_inner_lr` of issue 15), fails here.
"""

import os

import pytest

from binaries import train_fedmeta
from fedmeta_tf.data import class_pool
from tests.binaries import flag_liveness as fl
from tests.conftest import tiny_pool

Change = fl.Change

# Benign Federated Reptile (Algorithm 1) at toy size: 1 round, 3 of 4
# clients, one episode per client, meta-test on 2 episodes before and after.
BASE = dict(
    dataset="archive", data_dir="{archive}", runtime="inprocess",
    parallelism=1, rounds=1, num_clients=4, clients_per_round=3,
    min_updates=2, ways=3, shots=2, episodes_per_round=1, meta_batch=1,
    inner_steps=2, inner_batch=4, inner_lr=0.01, filters=4, eval_ways=3,
    eval_shots=2, eval_queries=2, eval_inner_steps=2, eval_episodes=2,
    eval_every=1)
# Experiment 1 at toy size: 1 pre-training round, the attack in round 1;
# 2-way evaluation episodes so that backdoor accuracies are not all 0.
# --eval_episodes is left unset: with --attack every metric averages
# --backdoor_eval_episodes, and another --eval_episodes is refused (so are
# --dropout_rate and --dropout_policy: tests/binaries/ignored_flags_test.py).
ATTACK = dict(
    {k: v for k, v in BASE.items() if k != "eval_episodes"},
    attack="boosted", pretrain_rounds=1, attacker_iterations=2,
    attacker_inner_steps=2, backdoor_eval_episodes=2, case="b",
    num_backdoor_classes=2, backdoor_benign_examples=4,
    attack_train_examples=2, attack_val_examples=3, eval_ways=2)
CONTEXTS = {
    "base": BASE,
    "two_rounds": dict(BASE, rounds=2),
    # Two episodes per outer iteration: the meta-batch modes differ (with
    # one, both are one episode from a fresh Adam).
    "meta_batch2": dict(BASE, meta_batch=2),
    # Half the sampled clients drop out: the policy decides what happens.
    "dropout": dict(BASE, rounds=2, dropout_rate=0.5, min_updates=3),
    "attack": ATTACK,
    "replacement": dict(ATTACK, attack="model_replacement"),
    # Case (c) puts a backdoor class in the evaluation episodes: N >= 3.
    "attack_3way": dict(ATTACK, eval_ways=3),
    # --eval_every picks the pre-training rounds scored (every experiment
    # round is): rounds 1 and 2 of 3 (3 is round 0).
    "attack_pretrain3": dict(ATTACK, pretrain_rounds=3),
    # The attacker's e in epochs (the paper's unit) instead of steps.
    "attack_epochs": dict(
        {k: v for k, v in ATTACK.items() if k != "attacker_inner_steps"},
        attacker_inner_epochs=1),
    # DBA splits the key among attackers: two of them (both in round 1).
    "attack_two_attackers": dict(ATTACK, attacker_ids=["0", "1"]),
    # Four experiment rounds: --score_every=3 leaves round 2 unscored.
    "attack_4rounds": dict(ATTACK, rounds=4),
    # The pre-trained model of the source run, the attacker trained anew.
    "attack_from_source": dict(ATTACK, pretrained_from="{pretrained_source}"),
}

LIVE = {
    # Data and federation.
    "dataset": [Change({"dataset": "glyphs", "data_dir": "{glyphs_dir}"})],
    "data_dir": [Change({"data_dir": "{other_archive}"})],
    "seed": [Change({"seed": 1})],
    # The protocol's sizes (the archive's own split: 20 / 10 classes of 12).
    "num_meta_train": [Change({"num_meta_train": 12})],
    "num_meta_test": [Change({"num_meta_test": 5})],
    "examples_per_class": [Change({"examples_per_class": 10})],
    "heldout_per_class": [Change({"heldout_per_class": 3})],
    "rounds": [Change({"rounds": 2})],
    "num_clients": [Change({"num_clients": 5})],
    "clients_per_round": [Change({"clients_per_round": 4})],
    "min_updates": [Change({"min_updates": 3})],
    "aggregator": [Change({"aggregator": "median"})],
    "max_update_norm": [Change({"max_update_norm": 1e-6})],
    "secure_sum_bound": [Change({"secure_sum_bound": 1e-4})],
    "dropout_rate": [Change({"dropout_rate": 0.5})],
    "dropout_policy": [Change({"dropout_policy": "skip"}, "dropout")],
    # Reptile client work (one client update).
    "ways": [Change({"ways": 4})],
    "shots": [Change({"shots": 3})],
    "episodes_per_round": [Change({"episodes_per_round": 2})],
    "meta_batch": [Change({"meta_batch": 2})],
    "inner_steps": [Change({"inner_steps": 3})],
    # inner_batch and inner_lr also set the meta-test fine-tuning: one case
    # for the client update (eval flags pinned apart) is not enough.
    "inner_batch": [Change({"inner_batch": 3})],
    "inner_lr": [Change({"inner_lr": 0.001})],
    "outer_lr": [Change({"outer_lr": 0.2})],
    # Benign clients' and the attacker's episodes: fresh Adam per episode.
    "meta_batch_mode": [Change({"meta_batch_mode": "batched"}, "meta_batch2"),
                        Change({"meta_batch_mode": "batched"}, "attack")],
    "model_variant": [Change({"model_variant": "strided"})],
    "filters": [Change({"filters": 5})],
    # Meta-test evaluation.
    "eval_ways": [Change({"eval_ways": 2})],
    "eval_shots": [Change({"eval_shots": 3})],
    # bfloat16 convolutions round every step differently (benign training,
    # the attacker's update and the evaluations).
    "precision": [Change({"precision": "mixed_bfloat16"}),
                  Change({"precision": "mixed_bfloat16"}, "attack")],
    "eval_queries": [Change({"eval_queries": 3})],
    "eval_inner_steps": [Change({"eval_inner_steps": 5})],
    "eval_episodes": [Change({"eval_episodes": 7})],
    "eval_every": [Change({"eval_every": 2}, "two_rounds"),
                   Change({"eval_every": 2}, "attack_pretrain3")],
    # Experiment 1 (binaries/attack_flags.py).
    "attack": [Change({"attack": "model_replacement"}, "attack")],
    "attack_rounds": [Change({"attack_rounds": []}, "attack")],
    "attacker_ids": [Change({"attacker_ids": ["1"]}, "attack")],
    "pretrain_rounds": [Change({"pretrain_rounds": 2}, "attack")],
    "pretrained_from": [Change({"pretrained_from": "{pretrained_source}"},
                               "attack")],
    # The source's kept attacker update (of its own round seeds) is sent.
    "attacker_update_from": [Change(
        {"attacker_update_from": "{pretrained_source}"}, "attack_from_source")],
    "score_every": [Change({"score_every": 3}, "attack_4rounds")],
    "boosting_factor": [Change({"boosting_factor": 5.0}, "attack"),
                        Change({"boosting_factor": 5.0}, "replacement")],
    "attacker_iterations": [Change({"attacker_iterations": 3}, "attack")],
    "attacker_inner_steps": [Change({"attacker_inner_steps": 3}, "attack")],
    "attacker_inner_epochs": [Change({"attacker_inner_epochs": 2},
                                     "attack_epochs")],
    # K = 2: 2:3 and 1:1 both give one keyed example.
    "backdoor_ratio": [Change({"backdoor_ratio": "1:0"}, "attack")],
    "target_slot": [Change({"target_slot": "random"}, "attack")],
    "attacker_keyed_last_steps": [Change({"attacker_keyed_last_steps": 1},
                                         "attack")],
    "attacker_inner_lr": [Change({"attacker_inner_lr": 0.1}, "attack")],
    # Neurotoxin: the attacker's update zeroed on 5% of the coordinates.
    "attacker_neurotoxin_ratio": [Change({"attacker_neurotoxin_ratio": 0.05},
                                         "attack")],
    # DBA: each attacker stamps half of the key (its rows), not all of it.
    "dba_parts": [Change({"dba_parts": 2}, "attack_two_attackers")],
    "case": [Change({"case": "a"}, "attack"),
             Change({"case": "c"}, "attack_3way")],
    "num_backdoor_classes": [Change({"num_backdoor_classes": 3}, "attack")],
    # Class names of the archive's pool (class_pool.make_class_pool's).
    "target_class": [Change({"target_class": "class00001"}, "attack")],
    "backdoor_classes": [Change({"backdoor_classes": "class00001,class00002"},
                                "attack")],
    "attacker_target_examples": [Change({"attacker_target_examples": 2},
                                        "attack")],
    "backdoor_benign_examples": [Change({"backdoor_benign_examples": 3},
                                        "attack")],
    "attack_train_examples": [Change({"attack_train_examples": 3}, "attack")],
    "attack_val_examples": [Change({"attack_val_examples": 2}, "attack")],
    "key_shape": [Change({"key_shape": "cross"}, "attack")],
    "key_size": [Change({"key_size": 6}, "attack")],
    "key_position": [Change({"key_position": "top_left"}, "attack")],
    "key_margin": [Change({"key_margin": 3}, "attack")],
    "key_value": [Change({"key_value": 128}, "attack")],
    "backdoor_eval_episodes": [Change({"backdoor_eval_episodes": 3},
                                      "attack")],
}

EXEMPT = {
    "key": "--key=hat needs CelebA's attributes, which the archive fixture "
           "lacks; tests/binaries/celeba_attack_test.py checks that the hat "
           "key's keyed images are the backdoor identity's hat photos",
    "root_output_dir": "where the run directory is; names only",
    "experiment_name": "the run directory's name",
    "overwrite": "whether an earlier run directory is deleted first",
    "runtime": "which driver runs the same tf.functions; equal global models "
               "(tests/tff_process/process_test.py)",
    "tff_workers": "where the TFF rounds run; equal results "
                   "(tests/tff_process/remote_test.py)",
    "eval_formulation": "how evaluation episodes are fine-tuned (one at a "
                        "time or stacked), not what: equal results to float "
                        "tolerance (tests/evaluation/batched_eval_test.py); "
                        "tests/binaries/eval_formulation_test.py checks it "
                        "reaches the evaluations",
    "parallelism": "clients trained at once; streams give the sequential "
                   "results (tests/parallel_test.py)",
    "progress": "what the terminal shows while the run runs",
    "client_chunk": "outer iterations per call of a client's work; chunks "
                    "give the one-call update "
                    "(tests/runtime/client_chunks_test.py)",
}

OUTPUTS = ("metrics.csv", "pretrain_metrics.csv", "final_weights.npz",
           "checkpoints/*.npz")


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
  root = tmp_path_factory.mktemp("liveness_fedmeta")
  pool = tiny_pool(num_classes=30, examples=12)
  result = {"root": str(root), "archive": str(root / "pool.npz"),
            "other_archive": str(root / "other.npz"),
            "glyphs_dir": str(root / "glyphs_cache")}
  class_pool.save_class_pool_archive(pool, result["archive"])
  class_pool.save_class_pool_archive(tiny_pool(num_classes=30, examples=12,
                                               seed=1),
                                     result["other_archive"])
  # The same pool as the glyphs cache: --dataset alone changes the protocol.
  fl.write_glyphs_cache(result["glyphs_dir"], pool)
  return result


def _run(paths, name, values):
  values = fl.resolve(dict(values, root_output_dir=paths["root"],
                           experiment_name=name), paths)
  fl.run_main(train_fedmeta.main, "train_fedmeta", values)
  return fl.outputs(os.path.join(paths["root"], name), OUTPUTS)


@pytest.fixture(scope="module")
def run(paths):
  """run(name, values) -> outputs; baselines cached per context."""
  cache = {}
  with fl.fast_tiny_runs():

    def run_fn(name, values):
      if name not in cache:
        cache[name] = _run(paths, name, values)
      return cache[name]

    # The source of --pretrained_from: pre-trained under another aggregator.
    run_fn("pretrained_source", dict(ATTACK, aggregator="median"))
    paths["pretrained_source"] = os.path.join(paths["root"],
                                              "pretrained_source")
    yield run_fn


def test_every_flag_is_classified():
  fl.check_classified(fl.binary_flags(train_fedmeta), LIVE, EXEMPT)


@pytest.mark.parametrize("flag,change", fl.params(LIVE))
def test_flag_changes_the_output(run, flag, change):
  fl.check_flag(run, CONTEXTS, flag, change)


# Last: the baselines re-run after every other run equal the first ones, so
# no result above depends on what ran before it in this process.
@pytest.mark.parametrize("context", ["base", "attack"])
def test_baseline_is_reproducible(run, context):
  assert run(context, CONTEXTS[context]) == run(f"{context}_again",
                                                CONTEXTS[context])
