"""The supervised CNN's heads."""

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.supervised import model as model_lib


@pytest.mark.parametrize("head", model_lib.HEADS)
def test_heads_give_logits_and_keep_the_pruned_layer(head):
  model = model_lib.build_supervised_cnn((16, 16, 1), 3, filters=(2, 2, 4),
                                         hidden=5, head=head)
  out = model(np.zeros([2, 16, 16, 1], np.float32))
  assert out.shape == (2, 3)
  assert model_lib.last_conv_name(model) == "conv3"
  assert model.get_layer("conv3").filters == 4
  model.get_layer(model_lib.last_activation_name(model))  # for the ranking


def test_global_heads_see_one_number_per_channel():
  for head, layer in (("gap", "gap"), ("gmp", "gmp")):
    model = model_lib.build_supervised_cnn((16, 16, 1), 3, filters=(2, 2, 4),
                                           hidden=5, head=head)
    assert model.get_layer(layer).output.shape[-1] == 4
    assert model.get_layer("fc1").kernel.shape[0] == 4


def test_unknown_head_is_an_error():
  with pytest.raises(ValueError, match="head"):
    model_lib.build_supervised_cnn((16, 16, 1), 3, head="attention")


def test_the_papers_mnist_model_has_its_layers_and_shapes():
  """Pruning paper, Section V-E 2: 2 conv (20, 50) + 2 FC on MNIST."""
  model = model_lib.build_supervised_cnn((28, 28, 1), 10, filters=(20, 50),
                                         hidden=(500,), kernel_size=5,
                                         padding="valid")
  convs = [l for l in model.layers if isinstance(l, tf.keras.layers.Conv2D)]
  dense = [l for l in model.layers if isinstance(l, tf.keras.layers.Dense)]
  assert [c.filters for c in convs] == [20, 50]
  assert [d.units for d in dense] == [500, 10]
  # 28 -> 24 -> 12 -> 8 -> 4: fc1 sees 4 * 4 * 50 inputs.
  assert model.get_layer("fc1").kernel.shape == (800, 500)
  assert model_lib.last_conv_name(model) == "conv2"
  assert model_lib.last_activation_name(model) == "relu2"


def test_four_conv_three_fc_and_layer_seeds_follow_the_layer_order():
  a = model_lib.build_supervised_cnn((32, 32, 3), 10, filters=(4, 4, 8, 8),
                                     hidden=(6, 5), seed=3)
  assert [l.name for l in a.layers if "fc" in l.name] == ["fc1", "fc2"]
  assert a.get_layer("logits").kernel.shape == (5, 10)
  # The default 3-conv, 1-hidden model keeps its historical initial weights
  # (conv i: seed + i - 1, fc1: seed + 3, logits: seed + 4).
  b = model_lib.build_supervised_cnn((16, 16, 1), 3, filters=(2, 2, 4),
                                     hidden=5, seed=1)
  expected = tf.keras.initializers.GlorotUniform(seed=5)(
      b.get_layer("logits").kernel.shape)
  np.testing.assert_array_equal(b.get_layer("logits").kernel.numpy(),
                                expected.numpy())


def test_too_small_input_and_bad_padding_are_errors():
  with pytest.raises(ValueError, match="too small"):
    model_lib.build_supervised_cnn((8, 8, 1), 3, filters=(2, 2, 2, 2),
                                   hidden=4, kernel_size=5, padding="valid")
  with pytest.raises(ValueError, match="padding"):
    model_lib.build_supervised_cnn((8, 8, 1), 3, padding="full")
