"""Tests for fedmeta_tf.defenses.local.export: load and serve in a fresh process."""

import subprocess
import sys

import numpy as np
import tensorflow as tf

from fedmeta_tf.data import episodes
from fedmeta_tf.defenses.local import export
from fedmeta_tf.defenses.local import secure_fine_tuning as sft
from tests.conftest import tiny_pool

_LOAD_AND_PREDICT = """
import sys, numpy as np, tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
images = np.load(sys.argv[2])
out = model.signatures["serving_default"](images=tf.constant(images))
np.save(sys.argv[3], out["probabilities"].numpy())
"""


def test_defended_model_serves_probabilities_in_a_fresh_process(tmp_path):
  pool = tf.constant(tiny_pool(num_classes=6, examples=5).images)
  ep = episodes.sample_episode(pool, ways=3, shots=3, queries=2,
                               seed=tf.constant([5, 0], tf.int64))
  learner = sft.MetricHeadLearner(
      image_shape=(28, 28, 1), ways=3, filters=8,
      config=sft.DefenseConfig(steps=8, head_only_steps=2, batch=4,
                               learning_rate=0.01))
  theta = [v.numpy() for v in learner.feature_variables]
  tf.function(learner.fine_tune)(theta, ep.support_images, ep.support_labels,
                                 tf.constant([0, 0], tf.int64))
  expected = np.exp(learner.predict(ep.query_images, ep.support_images,
                                    ep.support_labels).numpy())
  path = export.export_defended_model(
      learner.classifier, support_images=ep.support_images,
      support_labels=ep.support_labels, num_classes=3,
      path=str(tmp_path / "defended"))
  images = tmp_path / "images.npy"
  result = tmp_path / "probs.npy"
  np.save(images, ep.query_images.numpy())
  subprocess.run([sys.executable, "-c", _LOAD_AND_PREDICT, path, str(images),
                  str(result)], check=True, timeout=120)
  probs = np.load(result)
  assert probs.shape == (6, 3)
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)
