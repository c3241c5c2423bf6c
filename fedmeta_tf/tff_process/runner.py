"""`RoundRunner` over the TFF iterative process (the simulation driver).

The round is `process.build_fedmeta_process` with the aggregator object's TFF
factory and model step (`aggregation/aggregators.py`); the in-process driver
(`runtime/inprocess.py`) runs the same round without TFF.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.meta import client_work as client_work_lib
from fedmeta_tf.meta import round_runner
from fedmeta_tf.tff_process import process as process_lib


def _flatten_measurements(measurements, prefix="") -> dict:
  flat = {}
  items = (measurements.items() if hasattr(measurements, "items") else
           enumerate(measurements) if isinstance(measurements, (list, tuple))
           else None)
  if items is None:
    return {prefix.rstrip("/"): np.asarray(measurements).item()}
  for key, value in items:
    flat.update(_flatten_measurements(value, f"{prefix}{key}/"))
  return flat


class TffRunner(round_runner.RoundRunner):
  """Runs rounds with the TFF process; needs an active TFF context
  (`fedmeta_tf.tff_process.contexts.tff_runtime`)."""

  def __init__(self, *, model_fn: Callable[[], tf.keras.Model],
               client_work: client_work_lib.ClientWork, inner_lr: float,
               aggregator: aggregators.Aggregator, image_shape):
    self._client_work = client_work
    self.process = process_lib.build_fedmeta_process(
        model_fn=model_fn, client_work=client_work,
        aggregation_factory=aggregator.tff_factory(), inner_lr=inner_lr,
        image_shape=image_shape, model_step=aggregator.model_step)

  def initialize(self):
    return self.process.initialize()

  def next(self, state, client_ids):
    data = [self._client_work.make_client_data(c) for c in client_ids]
    state, measurements = self.process.next(state, data)
    # Per-round measurements, by their last name; the constant thresholds
    # of the secure sums are configuration, not metrics.
    metrics = {k.split("/")[-1]: v
               for k, v in _flatten_measurements(measurements).items()
               if not k.endswith("_threshold")}
    return state, metrics

  def weights(self, state):
    return process_lib.get_weights(state)

  def with_weights(self, state, weights):
    state = dict(state)
    model = dict(state["model"])
    model["weights"] = [np.asarray(v, np.float32) for v in weights]
    state["model"] = model
    return state
