"""SavedModel export of a client's defended local model.

What a benign client keeps after Algorithm 2: the fine-tuned feature
extractor f, the head (alpha, beta) and the support memory — the embeddings
f(x_k) of its support set (embedded as one batch, as in fine-tuning) and
their one-hot labels. The signature `serving_default` maps `images`
(float32 [batch, H, W, ch] in [0, 1]) to `probabilities` [batch, N]: the
head's y_hat against the stored memory. Batch norm uses the statistics of
the batch served (`models/conv4.py`), so classify a task's queries
together. Loads with `tf.saved_model.load(path)` in a fresh process,
without this package.
"""

from __future__ import annotations


import tensorflow as tf

from fedmeta_tf.models import export as model_export
from fedmeta_tf.models import matching


class _DefendedServing(tf.Module):

  def __init__(self, classifier: matching.FewShotClassifier, support_features,
               support_onehot, image_shape):
    super().__init__()
    self.classifier = classifier
    self.support_features = tf.Variable(support_features, trainable=False,
                                        name="support_features")
    self.support_onehot = tf.Variable(support_onehot, trainable=False,
                                      name="support_onehot")

    @tf.function(input_signature=[tf.TensorSpec([None, *image_shape],
                                                tf.float32, name="images")])
    def serve(images):
      log_probs = self.classifier(images, self.support_features,
                                  self.support_onehot)
      return {"probabilities": tf.exp(log_probs)}

    self.serve = serve


def export_defended_model(classifier: matching.FewShotClassifier, *,
                          support_images, support_labels, num_classes: int,
                          path: str) -> str:
  """Writes the defended model with its support memory to `path`.

  Written to a temporary directory and renamed, so a reader never sees a
  half-written model.
  """
  support_images = tf.convert_to_tensor(support_images, tf.float32)
  support_labels = tf.convert_to_tensor(support_labels, tf.int32)
  if support_images.shape.rank != 4:
    raise ValueError(f"support_images must be [S, H, W, ch], got shape "
                     f"{support_images.shape}")
  if int(tf.reduce_max(support_labels)) >= num_classes:
    raise ValueError(f"support labels must be < num_classes={num_classes}")
  module = _DefendedServing(
      classifier, classifier.embed(support_images),
      tf.one_hot(support_labels, num_classes),
      image_shape=support_images.shape[1:])
  return model_export.save_module_atomically(module, path)
