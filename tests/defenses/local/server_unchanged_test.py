"""The local defense changes nothing at the server (main paper, Section 4.1).

Algorithm 2 runs on a client after it receives theta_G and sends nothing
back, so the federated round must be the same computation with or without
clients that defend, and must still contain no unsecure aggregation. The
static checks compare `process.next` built before and after a client ran
the defense; the execution check runs rounds with and without a defense
between them and compares the global models.
"""

import re

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.data import episodes
from fedmeta_tf.defenses.local import glorot_mix
from fedmeta_tf.defenses.local import secure_fine_tuning as sft
from fedmeta_tf.meta import client_work
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.models import conv4
from fedmeta_tf.tff_process import contexts
from fedmeta_tf.tff_process import process
from tests.conftest import tiny_pool

CONFIG = reptile_tf.ReptileConfig(ways=3, shots=2, iterations=1, meta_batch=1,
                                  inner_steps=2, inner_batch=4)
SHAPE = (28, 28, 1)
POOLS = [tiny_pool(num_classes=6, examples=6, seed=c).images for c in range(3)]


def _model_fn():
  return conv4.build_conv4(SHAPE, 3, filters=4, seed=0)


def _process():
  return process.build_fedmeta_process(
      model_fn=_model_fn,
      client_work=client_work.BenignReptile(config=CONFIG, run_seed=7,
                                            client_pools=POOLS),
      aggregation_factory=aggregators.SecureMean(
          secure_sum_bound=1.0).tff_factory(),
      inner_lr=CONFIG.inner_lr, image_shape=SHAPE)


def _structure(computation) -> str:
  # TensorFlow leaves are named by a hash of their graph, which carries
  # per-build names; the federated structure must match exactly.
  text = computation.to_building_block().compact_representation()
  return re.sub(r"comp#[0-9a-f]+", "comp#", text)


def _defend_locally(global_weights, client):
  """What a benign client does with theta_G: Algorithm 2 on its own task."""
  mixed = glorot_mix.mixed_weights(global_weights, image_shape=SHAPE,
                                   num_classes=3, variant="maxpool", filters=4,
                                   delta=0.3, seed=7, client=client)
  features = glorot_mix.feature_part(mixed, image_shape=SHAPE, num_classes=3,
                                     variant="maxpool", filters=4)
  learner = sft.MetricHeadLearner(
      image_shape=SHAPE, ways=3, filters=4,
      config=sft.DefenseConfig(steps=3, head_only_steps=1, batch=4))
  ep = episodes.sample_episode(tf.constant(POOLS[client]), ways=3, shots=2,
                               queries=1, seed=tf.constant([client, 0],
                                                           tf.int64))
  learner.fine_tune(features, ep.support_images, ep.support_labels,
                    tf.constant([0, 0], tf.int64))


def test_round_computation_is_unchanged_and_secure_with_local_defense():
  before = _process()
  _defend_locally(_model_fn().get_weights(), client=1)
  after = _process()
  assert after.next.type_signature == before.next.type_signature
  assert after.initialize.type_signature == before.initialize.type_signature
  assert _structure(after.next) == _structure(before.next)
  tff.test.assert_not_contains_unsecure_aggregation(after.next)


def test_defending_between_rounds_leaves_the_global_model_unchanged():
  proc = _process()
  data = [client_work.BenignReptile(config=CONFIG, run_seed=7,
                                    client_pools=POOLS).make_client_data(c)
          for c in range(3)]
  with contexts.tff_runtime():
    state = proc.initialize()
    plain, _ = proc.next(state, data)
    plain, _ = proc.next(plain, data)
    defended, _ = proc.next(state, data)
    global_weights = process.get_weights(defended)
    for client in range(3):
      _defend_locally(global_weights, client)
    np.testing.assert_array_equal(global_weights[0],
                                  process.get_weights(defended)[0])
    defended, _ = proc.next(defended, data)
  for a, b in zip(process.get_weights(plain), process.get_weights(defended)):
    np.testing.assert_array_equal(a, b)
