"""`make_runner`: one function picks the round driver for every experiment."""

import pytest

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.experiments import runners
from fedmeta_tf.experiments import training
from fedmeta_tf.runtime import inprocess
from tests.aggregation.aggregators_test import tiny_parts


def _runner(runtime):
  model_fn, work = tiny_parts()
  return runners.make_runner(runtime, model_fn=model_fn, client_work=work,
                             inner_lr=0.01, aggregator=aggregators.Median(),
                             image_shape=(8, 8, 1))


@pytest.mark.parametrize("runtime", ["inprocess", training.Runtime.INPROCESS])
def test_inprocess_by_name_or_enum(runtime):
  runner = _runner(runtime)
  assert isinstance(runner, inprocess.InProcessRunner)
  state, metrics = runner.next(runner.initialize(), [0, 1])
  assert metrics == {} and len(runner.weights(state)) == 2


def test_unknown_runtime():
  with pytest.raises(ValueError, match="runtime must be one of tff, "
                     "inprocess, got 'gpu'"):
    _runner("gpu")
