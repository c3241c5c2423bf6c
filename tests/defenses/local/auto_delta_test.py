"""Tests for fedmeta_tf.defenses.local.auto_delta (`--deltas=auto`, our
per-layer rule for the Glorot mix of Algorithm 2, lines 2-4)."""

import json
import os

import numpy as np
import pytest

from fedmeta_tf.defenses.local import auto_delta
from fedmeta_tf.defenses.local import glorot_mix
from fedmeta_tf.defenses.local import sweep_figure
from fedmeta_tf.experiments import defend
from fedmeta_tf.models import conv4

SHAPE = (28, 28, 1)
FILTERS = 16
ARCH = dict(image_shape=SHAPE, num_classes=5, variant="maxpool",
            filters=FILTERS)
R = 3.0 / 7.0


def test_rule_by_hand_on_two_layers():
  # ||theta_G|| = 5, ||theta_g|| = 1 and ||theta_G|| = 1, ||theta_g|| = 2.
  global_w = [np.array([3.0, 4.0]), np.array([1.0])]
  noise_w = [np.array([0.0, 1.0]), np.array([-2.0])]
  deltas = auto_delta.auto_deltas(global_w, noise_w, ratio=0.5)
  np.testing.assert_allclose(deltas, [0.5 / 5.5, 1.0 / 2.0])
  # Equal norms, default r: the paper's 0.3.
  assert auto_delta.layer_delta(2.0, 2.0, auto_delta.DEFAULT_RATIO) == (
      pytest.approx(0.3))
  # A zero norm (BN beta, dense bias start at 0): r / (1 + r).
  assert auto_delta.layer_delta(1.0, 0.0, R) == pytest.approx(0.3)
  assert auto_delta.layer_delta(0.0, 1.0, 1.0) == pytest.approx(0.5)


def test_mixed_norm_ratio_is_r_per_layer():
  rng = np.random.default_rng(0)
  global_w = [rng.normal(size=(3, 3)) * 7, rng.normal(size=4)]
  noise_w = [rng.normal(size=(3, 3)), rng.normal(size=4) * 0.1]
  for r in (R, 0.2, 2.0):
    deltas = auto_delta.auto_deltas(global_w, noise_w, ratio=r)
    for g, n, d in zip(global_w, noise_w, deltas):
      ratio = (d * np.linalg.norm(g)) / ((1 - d) * np.linalg.norm(n))
      assert ratio == pytest.approx(r, rel=1e-9)
    # glorot_mix with these deltas is exactly d * G + (1 - d) * g.
    mixed = glorot_mix.glorot_mix(global_w, noise_w, delta=deltas)
    for m, g, n, d in zip(mixed, global_w, noise_w, deltas):
      np.testing.assert_allclose(m, d * g + (1 - d) * n, rtol=1e-5)


def _glorot_scale_model(seed):
  model = conv4.build_conv4(SHAPE, 5, filters=FILTERS, seed=seed)
  names = [v.name.split(":")[0] for v in model.trainable_variables]
  return [v.numpy() for v in model.trainable_variables], names


def test_glorot_scale_gives_0_3_and_grown_weights_more_noise():
  weights, names = _glorot_scale_model(seed=123)
  # Kernels of another Glorot draw have the noise's norm up to sampling,
  # gamma = 1 exactly; beta and the bias are zero: r/(1+r) = 0.3.
  _, used = auto_delta.mixed_weights(weights, ratio=R, seed=0, client=1,
                                     **ARCH)
  assert list(used) == names
  for name, d in used.items():
    assert d == pytest.approx(0.3, abs=0.03), name
  assert used["norm1/gamma"] == pytest.approx(0.3)
  doubled = [2.0 * v for v in weights]
  _, more_noise = auto_delta.mixed_weights(doubled, ratio=R, seed=0, client=1,
                                           **ARCH)
  for name in names:
    if "kernel" in name or "gamma" in name:
      assert more_noise[name] < used[name] - 0.05, name
      # 2x the global norm: delta = r n / (2 G + r n), by hand.
      g = np.linalg.norm(weights[names.index(name)])
      n = g * used[name] / (R * (1 - used[name]))
      assert more_noise[name] == pytest.approx(R * n / (2 * g + R * n))


def test_auto_uses_the_fixed_deltas_noise_draw():
  weights, names = _glorot_scale_model(seed=7)
  mixed, used = auto_delta.start_mix(weights, auto_delta.AUTO, ratio=R,
                                     seed=0, client=2, arch=ARCH)
  noise = glorot_mix.fresh_conv4_weights(
      SHAPE, 5, variant="maxpool", filters=FILTERS,
      seed=glorot_mix.noise_seed(0, 2))
  for m, g, n, name in zip(mixed, weights, noise, names):
    d = used[name]
    np.testing.assert_allclose(m, d * g + (1 - d) * n, rtol=1e-5, atol=1e-7)
  fixed, none = auto_delta.start_mix(weights, 0.3, ratio=R, seed=0, client=2,
                                     arch=ARCH)
  assert none == {}
  np.testing.assert_array_equal(
      fixed[0], glorot_mix.mixed_weights(weights, delta=0.3, seed=0, client=2,
                                         **ARCH)[0])


def test_parsing_labels_and_config():
  assert auto_delta.parse_delta("auto") == "auto"
  assert auto_delta.parse_delta("0.6") == 0.6
  with pytest.raises(ValueError, match=r"delta must be in \[0, 1\], got 1.5"):
    auto_delta.parse_delta(1.5)
  assert auto_delta.delta_label("auto") == "deltaauto"
  assert auto_delta.delta_label(0.3) == "delta0.3"
  config = defend.DefendConfig(deltas=["0.3", "auto"])
  assert config.deltas == (0.3, "auto")
  with pytest.raises(ValueError, match="auto_delta_ratio must be"):
    defend.DefendConfig(deltas=["auto"], auto_delta_ratio=-1.0)


def test_units_fingerprint_unchanged_without_auto():
  """Run directories of earlier versions (no auto_delta_ratio field) keep
  their resumable units; auto runs key on r."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  old = dataclasses.asdict(defend.DefendConfig(deltas=[0.3, 0.6]))
  old.pop("auto_delta_ratio")
  fixed = auto_delta.fingerprint_config(
      dataclasses.asdict(defend.DefendConfig(deltas=[0.3, 0.6])))
  assert fixed == old
  auto = auto_delta.fingerprint_config(
      dataclasses.asdict(defend.DefendConfig(deltas=["auto"])))
  assert auto["auto_delta_ratio"] == pytest.approx(R)
  assert auto_delta.summary_fields([0.3], R, prefixes=["", "x_"]) == {}


def test_sweep_figure_places_auto_apart_and_reads_old_summaries(tmp_path):
  metrics = {name: 0.5 for name, _, _ in sweep_figure.figures.SERIES}
  final = {f"{d}/b/client1": metrics for d in ("delta0.3", "delta0.6",
                                                "deltaauto")}
  by_case, auto = sweep_figure._by_case(final)  # pylint: disable=protected-access
  assert set(by_case["b"]) == {0.3, 0.6} and set(auto) == {"b"}
  path = str(tmp_path / "sweep.png")
  sweep_figure.plot_delta_sweep(final, path, unattacked=final, auto_at=0.25)
  assert os.path.getsize(path) > 0
  # A summary written before `auto` existed: numeric deltas only.
  old = json.loads(json.dumps({"final": {k: v for k, v in final.items()
                                         if "auto" not in k}}))
  sweep_figure.plot_delta_sweep(old["final"], path)
  assert set(sweep_figure.mean_over_clients(old["final"])) == {
      "delta0.3/b", "delta0.6/b"}


def test_mean_delta_is_over_the_kernels_of_every_client():
  used = {"client1": {"conv1/kernel": 0.1, "norm1/gamma": 0.3,
                      "logits/kernel": 0.2, "logits/bias": 0.3},
          "client2": {"conv1/kernel": 0.3, "norm1/beta": 0.3,
                      "logits/kernel": 0.2}}
  assert auto_delta.mean_delta(used) == pytest.approx(0.2)
  assert auto_delta.mean_delta({}) is None
