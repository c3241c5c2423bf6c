"""TrainingConfig takes the runtime as its enum or its flag value."""

import pytest

from fedmeta_tf.experiments import training


@pytest.mark.parametrize("value, expected", [
    ("tff", training.Runtime.TFF), ("inprocess", training.Runtime.INPROCESS),
    (training.Runtime.TFF, training.Runtime.TFF)])
def test_runtime_is_normalised_to_the_enum(value, expected):
  # A string once passed validation and then ran in-process: the drivers
  # test `config.runtime is Runtime.TFF`.
  config = training.TrainingConfig(runtime=value)
  assert config.runtime is expected
  assert training.TrainingConfig(runtime=value) == training.TrainingConfig(
      runtime=expected)


def test_unknown_runtime_is_refused():
  with pytest.raises(ValueError, match="unknown runtime 'gpu'; valid: tff, "
                     "inprocess"):
    training.TrainingConfig(runtime="gpu")
