"""The supervised CNN's heads."""

import numpy as np
import pytest

from fedmeta_tf.supervised import model as model_lib


@pytest.mark.parametrize("head", model_lib.HEADS)
def test_heads_give_logits_and_keep_the_pruned_layer(head):
  model = model_lib.build_supervised_cnn((16, 16, 1), 3, filters=(2, 2, 4),
                                         hidden=5, head=head)
  out = model(np.zeros([2, 16, 16, 1], np.float32))
  assert out.shape == (2, 3)
  assert model.get_layer(model_lib.LAST_CONV).filters == 4
  model.get_layer(model_lib.LAST_ACTIVATION)  # exists for the ranking


def test_global_heads_see_one_number_per_channel():
  for head, layer in (("gap", "gap"), ("gmp", "gmp")):
    model = model_lib.build_supervised_cnn((16, 16, 1), 3, filters=(2, 2, 4),
                                           hidden=5, head=head)
    assert model.get_layer(layer).output.shape[-1] == 4
    assert model.get_layer("fc1").kernel.shape[0] == 4


def test_unknown_head_is_an_error():
  with pytest.raises(ValueError, match="head"):
    model_lib.build_supervised_cnn((16, 16, 1), 3, head="attention")
