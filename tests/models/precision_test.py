"""Tests for fedmeta_tf.models.precision and Conv4 under mixed bfloat16."""

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.models import conv4
from fedmeta_tf.models import matching
from fedmeta_tf.models import precision

MIXED = precision.Precision.MIXED_BFLOAT16


def test_cpu_flags_read_from_cpuinfo(tmp_path):
  path = tmp_path / "cpuinfo"
  path.write_text("processor\t: 0\nflags\t\t: fpu sse avx512_bf16 amx_tile\n"
                  "processor\t: 1\nflags\t\t: other\n")
  assert precision.cpu_flags(str(path)) == {"fpu", "sse", "avx512_bf16",
                                            "amx_tile"}
  assert precision.cpu_flags(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize("cpu,gpus,slower", [
    ({"avx2", "fma"}, [], True),  # the 2-core AMD EPYC of this project
    ({"avx2", "avx512_bf16"}, [], False),
    ({"avx2", "amx_bf16"}, [], False),
    ({"avx2"}, [(8, 0)], False),  # A100 and later
    ({"avx2", "amx_bf16"}, [(7, 5)], True),  # the GPU runs the model
])
def test_why_slower_names_the_missing_hardware(cpu, gpus, slower):
  why = precision.why_slower(MIXED, cpu=frozenset(cpu), gpus=gpus)
  assert (why is not None) == slower
  if slower:
    assert ("avx512_bf16" in why) if not gpus else ("7.5" in why)
  assert precision.why_slower(precision.Precision.FLOAT32,
                              cpu=frozenset(cpu), gpus=gpus) is None


def test_why_slower_here_reads_this_machine():
  assert precision.why_slower_here("float32") is None
  assert precision.why_slower_here("mixed_bfloat16") == precision.why_slower(
      MIXED, cpu=precision.cpu_flags(), gpus=precision.gpu_capabilities())


def test_policy_is_restored_even_after_an_error():
  before = tf.keras.mixed_precision.global_policy().name
  with pytest.raises(RuntimeError):
    with precision.policy("mixed_bfloat16"):
      assert tf.keras.mixed_precision.global_policy().name == "mixed_bfloat16"
      raise RuntimeError("boom")
  assert tf.keras.mixed_precision.global_policy().name == before
  with pytest.raises(ValueError, match="unknown precision 'float16'"):
    with precision.policy("float16"):
      pass


def _build(policy_name, **kwargs):
  with precision.policy(policy_name):
    return conv4.build_conv4((28, 28, 1), 3, filters=8, seed=3, **kwargs)


def test_mixed_conv4_computes_convs_in_bf16_and_keeps_float32_variables():
  model = _build("mixed_bfloat16")
  features = conv4.feature_extractor(model)
  assert features.get_layer("conv1").compute_dtype == "bfloat16"
  norm = features.get_layer("norm1")
  assert norm.compute_dtype == "bfloat16"
  # gamma / beta stay float32 inside call (not autocast): the fused batch
  # norm takes float32 scale / offset and keeps its statistics in float32.
  assert {v.dtype for v in norm.variables} == {tf.float32}
  assert all(type(v).__name__ != "AutoCastVariable" for v in norm.variables)
  assert model.get_layer(conv4.LOGITS_LAYER).compute_dtype == "float32"
  assert {v.dtype for v in model.trainable_variables} == {tf.float32}
  images = tf.random.stateless_uniform([6, 28, 28, 1], seed=[1, 2])
  assert model(images).dtype == tf.float32


def test_mixed_training_step_updates_float32_weights_close_to_float32():
  images = tf.random.stateless_uniform([6, 28, 28, 1], seed=[1, 2])
  labels = tf.constant([0, 1, 2, 0, 1, 2])
  results = {}
  for name in ("float32", "mixed_bfloat16"):
    model = _build(name)
    optimizer = reptile_tf.make_inner_optimizer(1e-3)
    reptile_tf.build_optimizer(optimizer, model)
    before = [v.numpy() for v in model.trainable_variables]
    loss = reptile_tf.train_steps(model, optimizer, images, labels, steps=2,
                                  batch_size=6, seed=[0, 0])
    assert loss.dtype == tf.float32 and np.isfinite(loss.numpy())
    results[name] = (loss.numpy(), [v.numpy() - b for v, b in
                                    zip(model.trainable_variables, before)])
  (loss32, step32), (loss16, step16) = results["float32"], results["mixed_bfloat16"]
  # Same start (seeded), different rounding: close but not equal.
  assert loss16 == pytest.approx(loss32, rel=0.05)
  assert not all(np.array_equal(a, b) for a, b in zip(step32, step16))
  # Adam's step is about eta * sign(gradient) per coordinate, so bfloat16
  # rounding flips some coordinates; the update keeps its direction.
  a = np.concatenate([s.ravel() for s in step32])
  b = np.concatenate([s.ravel() for s in step16])
  cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
  assert cosine > 0.8


def test_mixed_matching_head_returns_float32_log_probabilities():
  model = _build("mixed_bfloat16")
  with precision.policy("mixed_bfloat16"):
    classifier = matching.FewShotClassifier(conv4.feature_extractor(model),
                                            matching.build_head("matching"))
  images = tf.random.stateless_uniform([6, 28, 28, 1], seed=[1, 2])
  log_probs = classifier.support_log_probs(
      images, tf.constant([0, 1, 2, 0, 1, 2]), tf.range(6), num_classes=3,
      leave_one_out=True)
  assert log_probs.dtype == tf.float32
  np.testing.assert_allclose(tf.reduce_logsumexp(log_probs, -1), 0, atol=1e-5)
