"""SavedModel export of a global model, with a serving signature.

The signature `serving_default` maps `images` (float32 [batch, H, W, ch] in
[0, 1]) to `logits` [batch, N]. Batch norm uses the batch's own statistics
(see `models/conv4.py`), so classify an episode's queries together, as
evaluation does. Loads with `tf.saved_model.load(path)` in a fresh process,
without this package.
"""

from __future__ import annotations

import os

import tensorflow as tf

from fedmeta_tf import logs


class _ServingModule(tf.Module):

  def __init__(self, model: tf.keras.Model):
    super().__init__()
    self.model = model
    shape = [None, *model.input_shape[1:]]

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32,
                                                name="images")])
    def serve(images):
      return {"logits": self.model(images, training=True)}

    self.serve = serve


def export_saved_model(model: tf.keras.Model, path: str) -> str:
  """Writes `model` as a SavedModel at `path` (replacing what was there).

  Written to a temporary directory first and renamed, so a reader never sees
  a half-written model.
  """
  return save_module_atomically(_ServingModule(model), path)


def save_module_atomically(module: tf.Module, path: str) -> str:
  """Saves `module` (with a `serve` tf.function) as a SavedModel at `path`,
  through a temporary directory and a rename; replaces what was there."""
  tmp = path.rstrip("/") + ".tmp"
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)
  with logs.quiet():  # SavedModel's per-save INFO lines (fedmeta_tf/logs.py).
    tf.saved_model.save(module, tmp,
                        signatures={"serving_default": module.serve})
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)
  os.replace(tmp, path)
  return path
