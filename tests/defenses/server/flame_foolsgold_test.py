"""FLAME and FoolsGold: by-hand rounds, the clustering against HDBSCAN, the
TFF form equal to the in-process one, and both needing every update at the
server (TFF's static check for unsecure aggregation fails)."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedmeta_tf.aggregation import plaintext_defenses as pd
from fedmeta_tf.defenses.server import flame_tf
from fedmeta_tf.defenses.server import foolsgold_tf
from fedmeta_tf.tff_process import contexts
from fedmeta_tf.tff_process import process as process_lib
from tests.aggregation.aggregators_test import tiny_parts
from tests.aggregation.round_helpers import VALUE_TYPE
from tests.aggregation.round_helpers import round_in_both_drivers

VALUE_TYPE = tff.StructWithPythonType(
    [tff.TensorType(np.float32, [2]), tff.TensorType(np.float32, [1, 1])],
    list)


def _updates(rows):
  """Each row [a, b, c] -> the two-tensor update ([a, b], [[c]])."""
  return [[np.array(r[:2], np.float32), np.array([[r[2]]], np.float32)]
          for r in rows]


def _flat(update):
  return np.concatenate([np.ravel(np.asarray(u)) for u in update])


# Four honest updates along +x with norms 1..4, one boosted opposite one.
FLAME_ROWS = [[1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 0, 0], [-10, 0, 0]]


def test_flame_by_hand_drops_the_outlier_and_clips_to_the_median_norm():
  # Norms 1, 2, 3, 4, 10: S_t = 3; admitted 1..4, clipped to 1, 2, 3, 3:
  # mean 2.25 along +x (the plain mean would be 0).
  update, metrics = pd.Flame(noise_lambda=0.0).aggregate(
      _updates(FLAME_ROWS), None)
  np.testing.assert_allclose(_flat(update), [2.25, 0, 0], atol=1e-6)
  assert metrics == {"flame_admitted": 4, "flame_clip_bound": 3.0}


def test_flame_clustering_is_single_linkage_to_a_majority():
  # Points on a line (distance |x - y|): n=5, m=3; {0, 1, 2} reaches 3
  # members at threshold 1, before {10, 11} joins.
  x = np.array([0., 1., 2., 10., 11.], np.float32)
  admitted = flame_tf.majority_cluster(tf.constant(np.abs(x[:, None] -
                                                          x[None, :])))
  np.testing.assert_array_equal(admitted, [1, 1, 1, 0, 0])
  # n=6, m=4: two groups of 3 never reach 4 apart; HDBSCAN's single cluster
  # then holds everyone.
  x = np.array([0., 1., 3., 10., 11., 12.], np.float32)
  admitted = flame_tf.majority_cluster(tf.constant(np.abs(x[:, None] -
                                                          x[None, :])))
  assert np.all(admitted)


def test_flame_clustering_labels_what_hdbscan_labels():
  cluster = pytest.importorskip("sklearn.cluster")
  rng = np.random.default_rng(1)
  for trial in range(30):
    n, d = int(rng.integers(3, 12)), int(rng.integers(2, 5))
    centres = rng.normal(size=[2, d])
    vectors = (centres[rng.integers(0, 2, n)] + (trial % 3) * 0.4 *
               rng.normal(size=[n, d])).astype(np.float32)
    distances = flame_tf.cosine_distances(tf.constant(vectors))
    mine = flame_tf.majority_cluster(distances).numpy()
    labels = cluster.HDBSCAN(min_cluster_size=n // 2 + 1, min_samples=1,
                             metric="precomputed", allow_single_cluster=True
                             ).fit(distances.numpy().astype(np.float64)).labels_
    np.testing.assert_array_equal(mine, labels >= 0, err_msg=str(trial))


def test_flame_noise_has_sigma_lambda_times_the_clip_bound():
  rng = np.random.default_rng(0)
  base = rng.normal(size=[4000]).astype(np.float32)
  updates = [[base * s] for s in (1.0, 1.1, 1.2, 1.3, 1.4)]
  clean, metrics = pd.Flame(noise_lambda=0.0).aggregate(updates, None)
  noisy, _ = pd.Flame(noise_lambda=0.01).aggregate(updates, None)
  again, _ = pd.Flame(noise_lambda=0.01).aggregate(updates, None)
  reseeded, _ = pd.Flame(noise_lambda=0.01, noise_seed=1).aggregate(
      updates, None)
  noise = noisy[0].numpy() - clean[0].numpy()
  sigma = 0.01 * metrics["flame_clip_bound"]
  assert abs(np.std(noise) / sigma - 1) < 0.05
  np.testing.assert_array_equal(noisy[0], again[0])
  assert not np.allclose(noisy[0], reseeded[0])


def test_foolsgold_zeroes_identical_sybils_and_keeps_diverse_clients():
  # Three honest clients, pairwise cosine 0.19; two sybils with the same
  # direction (cosine 1): alpha = 0 for the sybils, and the honest
  # 1 - 0.19 rescale to 1 -> 0.99 -> logit 5.1 -> 1.
  honest = [[1, .2, 0], [0, 1, .2], [.2, 0, 1]]
  sybils = [[0, 0, 0, 1, 1], [0, 0, 0, 2, 2]]
  rows = [r + [0, 0] for r in honest] + sybils
  alpha = foolsgold_tf.foolsgold_weights(tf.constant(rows, tf.float32))
  np.testing.assert_allclose(alpha, [1, 1, 1, 0, 0])
  updates = [[np.array(r, np.float32)] for r in rows]
  update, metrics = pd.FoolsGold().aggregate(updates, None)
  np.testing.assert_allclose(update[0], np.mean(rows[:3], axis=0),
                             rtol=1e-6)
  assert metrics == {"foolsgold_weight_sum": 3.0, "foolsgold_zeroed": 2}


def test_foolsgold_logit_by_hand():
  # a, b at cosine 0.5, c orthogonal to both: alpha = 0.5, 0.5, 1 ->
  # rescaled 0.5, 0.5, 0.99 -> ln(1) + 0.5 = 0.5 and 1.
  a, b, c = [1, 0, 0], [0.5, math.sqrt(0.75), 0], [0, 0, 1]
  alpha = foolsgold_tf.foolsgold_weights(tf.constant([a, b, c], tf.float32))
  np.testing.assert_allclose(alpha, [0.5, 0.5, 1.0], rtol=1e-5)
  update, _ = pd.FoolsGold().aggregate([[np.array(v, np.float32)]
                                        for v in (a, b, c)], None)
  want = (0.5 * np.array(a) + 0.5 * np.array(b) + np.array(c)) / 2.0
  np.testing.assert_allclose(update[0], want, rtol=1e-5)


def test_foolsgold_pardons_an_honest_client_near_the_sybils():
  # h1 has cosine 0.5 with two identical sybils (max 1): pardoned to
  # 0.5 * 0.5 / 1 = 0.25, alpha 0.75 -> ln(3) + 0.5 > 1 -> 1. Unpardoned it
  # would be 0.5 -> 0.5 (as in the logit test).
  rows = [[1, 0, 0], [1, 0, 0], [0.5, math.sqrt(0.75), 0], [0, 0, 1]]
  alpha = foolsgold_tf.foolsgold_weights(tf.constant(rows, tf.float32))
  np.testing.assert_allclose(alpha, [0, 0, 1, 1])


def test_foolsgold_everyone_twinned_gives_a_zero_step():
  updates = [[np.array([1., 2.], np.float32)]] * 3
  update, metrics = pd.FoolsGold().aggregate(updates, None)
  np.testing.assert_array_equal(update[0], [0, 0])
  assert metrics["foolsgold_zeroed"] == 3


def test_no_update_gives_a_zero_step():
  for aggregator in (pd.Flame(), pd.FoolsGold()):
    update, _ = aggregator.aggregate([], [tf.ones([2]), tf.ones([1, 1])])
    assert [u.shape for u in update] == [(2,), (1, 1)]
    assert not any(np.any(u) for u in update)


@pytest.mark.parametrize("aggregator", [
    pd.Flame(noise_lambda=0.0), pd.Flame(noise_lambda=0.05), pd.FoolsGold()],
                         ids=["flame_no_noise", "flame_noise", "foolsgold"])
def test_tff_form_equals_the_in_process_form(aggregator):
  rows = FLAME_ROWS + [[1, .2, 0], [0, 1, .2], [0, 0, 3]]
  values = _updates(rows)
  expected, metrics = aggregator.aggregate(values, None)
  process = aggregator.tff_factory().create(VALUE_TYPE)
  with contexts.tff_runtime():
    output = process.next(process.initialize(), values)
  for got, want in zip(output.result, expected):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert dict(output.measurements) == pytest.approx(metrics)


@pytest.mark.parametrize("aggregator", [pd.Flame(), pd.FoolsGold()],
                         ids=["flame", "foolsgold"])
def test_round_is_not_a_secure_aggregation(aggregator):
  assert not aggregator.keeps_secure_aggregation
  model_fn, work = tiny_parts()
  process = process_lib.build_fedmeta_process(
      model_fn=model_fn, client_work=work,
      aggregation_factory=aggregator.tff_factory(), inner_lr=0.01,
      image_shape=(8, 8, 1))
  with pytest.raises(AssertionError, match="unsecure"):
    tff.test.assert_not_contains_unsecure_aggregation(process.next)


def test_bad_parameters_raise():
  with pytest.raises(ValueError, match="flame: noise lambda must be >= 0"):
    pd.Flame(noise_lambda=-1.0)
  with pytest.raises(ValueError, match="foolsgold: kappa must be positive"):
    pd.FoolsGold(kappa=0.0)


@pytest.mark.parametrize("aggregator", [pd.Flame(noise_lambda=0.01),
                                        pd.FoolsGold()],
                         ids=["flame", "foolsgold"])
def test_a_round_is_the_same_in_tff_and_in_process(aggregator):
  # Two clients (FLAME admits both: m = 2); the noise is seeded by S_t, so
  # the two drivers draw the same.
  _, metrics, _, tff_metrics, _ = round_in_both_drivers(aggregator)
  assert tff_metrics == pytest.approx(metrics)
  assert set(metrics) == set(aggregator.metric_names)
