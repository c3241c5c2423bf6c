"""--eval_formulation reaches the evaluations of every binary that has it.

What each formulation computes is tested in tests/evaluation/
batched_eval_test.py (the same curves as one episode at a time).
"""

import os

import pytest

from binaries import defend
from binaries import eval_formulation_flag
from binaries import finetune
from binaries import train_fedmeta
from fedmeta_tf.data import class_pool
from fedmeta_tf.evaluation import batched_eval
from fedmeta_tf.models import stacked_conv4
from tests.binaries import flag_liveness as fl
from tests.binaries import flag_liveness_train_fedmeta_test as liveness
from tests.conftest import tiny_pool


@pytest.fixture(autouse=True)
def sequential_after():
  yield
  batched_eval.configure(batched_eval.SEQUENTIAL)


def test_train_fedmeta_meta_tests_with_the_chosen_formulation(tmp_path,
                                                               monkeypatch):
  archive = str(tmp_path / "pool.npz")
  class_pool.save_class_pool_archive(tiny_pool(num_classes=30, examples=12),
                                     archive)
  stacks = []
  original = batched_eval.make_batched_evaluate

  def spy(*args, **kwargs):
    stacks.append(args[-1])
    return original(*args, **kwargs)

  monkeypatch.setattr(batched_eval, "make_batched_evaluate", spy)
  metrics = {}
  with fl.fast_tiny_runs():
    for choice in ("sequential", "loop", "auto"):
      values = fl.resolve(dict(liveness.BASE, root_output_dir=str(tmp_path),
                               experiment_name=choice,
                               eval_formulation=choice), {"archive": archive})
      fl.run_main(train_fedmeta.main, "train_fedmeta", values)
      with open(os.path.join(tmp_path, choice, "metrics.csv")) as f:
        metrics[choice] = f.read()
  # One meta-tester per run: none for sequential (and auto on a CPU).
  auto = batched_eval.auto_formulation()
  assert stacks == [stacked_conv4.Formulation.LOOP] + ([auto] if auto else [])
  assert metrics["loop"] == metrics["sequential"] == metrics["auto"]


@pytest.mark.parametrize("binary", [finetune, defend])
def test_experiments_2_and_3_configure_it(binary, tmp_path, monkeypatch):
  chosen = []
  monkeypatch.setattr(batched_eval, "configure", chosen.append)
  with pytest.raises(SystemExit) as exit_info:  # no attacked run there
    fl.run_main(binary.main, binary.__name__,
                {"from": str(tmp_path), "eval_formulation": "loop"})
  assert exit_info.value.code == 2
  assert chosen == ["loop"]


def test_the_flag_offers_the_library_choices():
  assert eval_formulation_flag.CHOICES == batched_eval.CHOICES
