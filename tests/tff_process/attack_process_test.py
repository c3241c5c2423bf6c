"""The attack is a client-work strategy: the TFF round is unchanged by it.

Type-signature tests (static) are separate from the execution test, as in
TFF's `aggregators/secure_test.py`.
"""

import numpy as np
import tensorflow_federated as tff

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.attacks import backdoor_reptile as br
from fedmeta_tf.meta import client_work
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.models import conv4
from fedmeta_tf.tff_process import contexts
from fedmeta_tf.tff_process import process
from fedmeta_tf.tff_process import runner as runner_lib
from tests.conftest import tiny_pool

CONFIG = reptile_tf.ReptileConfig(ways=3, shots=2, iterations=1, meta_batch=1,
                                  inner_steps=1, inner_batch=4)


def _model_fn():
  return conv4.build_conv4((28, 28, 1), 3, filters=4, seed=0)


def _pools():
  return [tiny_pool(num_classes=5, examples=6, seed=s).images
          for s in range(3)]


def _attack(attacker_ids=(0,), boosting=3.0):
  return br.BackdoorReptile(
      config=CONFIG, run_seed=0, client_pools=_pools(),
      attacker=br.AttackerConfig(iterations=2, inner_steps=2,
                                 boosting_factor=boosting),
      attacker_ids=attacker_ids,
      target_images=np.full([3, 28, 28, 1], 9, np.uint8),
      backdoor_images=np.full([3, 28, 28, 1], 250, np.uint8))


def _process(work):
  return process.build_fedmeta_process(
      model_fn=_model_fn, client_work=work,
      aggregation_factory=aggregators.SecureMean(
          secure_sum_bound=10.0).tff_factory(),
      inner_lr=0.001, image_shape=(28, 28, 1))


def test_process_with_an_attacker_has_only_secure_aggregation():
  with contexts.tff_runtime():
    attacked = _process(_attack())
    tff.test.assert_not_contains_unsecure_aggregation(attacked.next)


def test_round_signature_does_not_depend_on_the_attacker():
  with contexts.tff_runtime():
    attacked = _process(_attack(attacker_ids=(0,), boosting=3.0))
    other = _process(_attack(attacker_ids=(2,), boosting=10.0))
    benign = _process(client_work.BenignReptile(
        config=CONFIG, run_seed=0, client_pools=_pools()))
    assert attacked.next.type_signature == other.next.type_signature
    assert attacked.initialize.type_signature == benign.initialize.type_signature
    # Server state and measurements are those of the benign process; only the
    # shared client-data type carries the strategy's extra tensors.
    a, b = attacked.next.type_signature, benign.next.type_signature
    assert a.result == b.result
    assert a.parameter[0] == b.parameter[0]


def test_a_round_with_the_attacker_runs_in_tff():
  with contexts.tff_runtime():
    work = _attack()
    runner = runner_lib.TffRunner(model_fn=_model_fn, client_work=work,
                                  inner_lr=0.001,
                                  aggregator=aggregators.SecureMean(
                                      secure_sum_bound=10.0),
                                  image_shape=(28, 28, 1))
    state = runner.initialize()
    before = runner.weights(state)
    state, metrics = runner.next(state, [0, 1, 2])
    after = runner.weights(state)
    assert "secure_upper_clipped_count" in metrics
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))
