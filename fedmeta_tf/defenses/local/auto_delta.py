"""`--deltas=auto`: a per-layer delta for the Glorot mix (issue #21, item 3).

The main paper (Section 4, Algorithm 2, lines 2-4) mixes the received
global model with a fresh Glorot draw, theta' = delta * theta_G + (1 -
delta) * theta_g, with one fixed delta, and leaves choosing delta as future
work. A fixed delta is not a fixed amount of noise: delta = 0.3 hides a
global model whose weights are larger than a Glorot draw's less than one
at Glorot scale. (Measured on Omniglot and glyphs: benign Federated
Reptile keeps the conv kernels at Glorot scale, after 6 as after 30 rounds;
a boosted attacker's update raises them 3-4x on Omniglot, 2.2-3.4x on
glyphs. Batch normalisation after each conv makes the kernel's scale
irrelevant to the function, not to the mix.)

Our rule (not the paper's): each client, alone (no server, no other
client: it composes with secure aggregation), chooses per variable l of the
mix the delta_l at which the global part's norm is `ratio` times the noise
part's,

    delta_l * ||theta_G,l|| = r * (1 - delta_l) * ||theta_g,l||
    =>  delta_l = r ||theta_g,l|| / (||theta_G,l|| + r ||theta_g,l||).

theta_g,l is the variable's own fresh initial value, as in `glorot_mix`:
a Glorot draw for kernels, ones for batch-norm gamma. The default r = 3/7
gives delta_l = 0.3 (Experiment 3(a)'s delta) when ||theta_G,l|| =
||theta_g,l||, i.e. for a model at Glorot scale, and a smaller delta (more
noise) for a model whose weights have grown. Where the ratio is undefined,
a zero norm on either side (batch-norm beta and the dense bias start at
zero), delta_l = r / (1 + r), what the rule gives at equal norms.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np

from fedmeta_tf.defenses.local import glorot_mix
from fedmeta_tf.models import conv4

AUTO = "auto"
DEFAULT_RATIO = 3.0 / 7.0  # delta_l = 0.3 at equal norms.

Delta = Union[float, str]  # a delta in [0, 1], or AUTO.


def parse_delta(value) -> Delta:
  """AUTO, or `value` as a float in [0, 1] (ValueError otherwise)."""
  if isinstance(value, str) and value.strip() == AUTO:
    return AUTO
  delta = float(value)
  if not 0.0 <= delta <= 1.0:
    raise ValueError(f"delta must be in [0, 1], got {delta}")
  return delta


def is_auto(delta: Delta) -> bool:
  return isinstance(delta, str) and delta == AUTO


def delta_label(delta: Delta) -> str:
  """The name of a delta's outputs: `delta0.3`, `deltaauto`."""
  return f"delta{AUTO}" if is_auto(delta) else f"delta{float(delta):g}"


def check_ratio(ratio: float) -> float:
  ratio = float(ratio)
  if not (math.isfinite(ratio) and ratio >= 0.0):
    raise ValueError(f"auto_delta_ratio must be a finite number >= 0, got "
                     f"{ratio}")
  return ratio


def layer_delta(global_norm: float, noise_norm: float, ratio: float) -> float:
  """delta_l = r ||theta_g,l|| / (||theta_G,l|| + r ||theta_g,l||); r/(1+r)
  where a norm is zero."""
  ratio = check_ratio(ratio)
  if global_norm <= 0.0 or noise_norm <= 0.0:
    return ratio / (1.0 + ratio)
  return ratio * noise_norm / (global_norm + ratio * noise_norm)


def auto_deltas(global_weights, noise_weights, *, ratio: float) -> list:
  """delta_l of every variable (in order) of theta_G against theta_g."""
  if len(global_weights) != len(noise_weights):
    raise ValueError(f"theta_G has {len(global_weights)} variables, theta_g "
                     f"{len(noise_weights)}: not the same architecture")
  return [layer_delta(float(np.linalg.norm(np.asarray(g, np.float64))),
                      float(np.linalg.norm(np.asarray(n, np.float64))), ratio)
          for g, n in zip(global_weights, noise_weights)]


def mixed_weights(global_weights, *, image_shape, num_classes: int,
                  variant: str, filters: int, ratio: float, seed: int,
                  client: int) -> tuple[list, dict]:
  """theta' of the whole Conv4 for `client` with per-variable auto deltas
  (Algorithm 2, lines 3-4, delta by our rule); also {variable: delta_l}.

  The draw is `glorot_mix.mixed_weights`' (same noise seed), so `auto`
  differs from a fixed delta only in the deltas.
  """
  model = conv4.build_conv4(tuple(image_shape), num_classes, variant=variant,
                            filters=filters,
                            seed=glorot_mix.noise_seed(seed, client))
  noise = [v.numpy() for v in model.trainable_variables]
  names = [v.name.split(":")[0] for v in model.trainable_variables]
  deltas = auto_deltas(global_weights, noise, ratio=ratio)
  mixed = glorot_mix.glorot_mix(global_weights, noise, delta=deltas)
  return mixed, dict(zip(names, deltas))


def start_mix(global_weights, delta: Delta, *, ratio: float, seed: int,
              client: int, arch: dict) -> tuple[list, dict]:
  """theta' for a fixed or automatic delta; the per-variable deltas used
  ({} for a fixed delta). `arch`: glorot_mix's architecture arguments."""
  if is_auto(delta):
    return mixed_weights(global_weights, ratio=ratio, seed=seed,
                         client=client, **arch)
  return glorot_mix.mixed_weights(global_weights, delta=delta, seed=seed,
                                  client=client, **arch), {}


def summary_fields(deltas: Sequence[Delta], ratio: float, *,
                   prefixes: Sequence[str]) -> dict:
  """summary.json's `auto` fields, to fill: r and, per model prefix ("",
  "unattacked_"), `<prefix>auto_delta` {"client<i>": {variable: delta_l}};
  {} when no delta is `auto` (summaries stay as before)."""
  if not any(map(is_auto, deltas)):
    return {}
  return dict({"auto_delta_ratio": ratio},
              **{f"{prefix}auto_delta": {} for prefix in prefixes})


def mean_delta(used: dict) -> Optional[float]:
  """The mean delta_l over clients and kernels (conv and dense: nearly all
  of Conv4's parameters; batch-norm variables and the bias keep about r /
  (1 + r)) of {client: {var: d}}; None when empty (no `auto`)."""
  values = [d for layers in used.values() for name, d in layers.items()
            if name.endswith("/kernel")]
  return float(np.mean(values)) if values else None


def fingerprint_config(config: dict) -> dict:
  """The config dict that keys resumable units: without `auto_delta_ratio`
  when no delta is `auto`, so run directories of earlier versions (no such
  field) keep their units."""
  if not any(is_auto(d) for d in config.get("deltas", ())):
    config = {k: v for k, v in config.items() if k != "auto_delta_ratio"}
  return config
