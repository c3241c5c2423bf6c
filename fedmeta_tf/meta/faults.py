"""Fault injection: a client-work wrapper whose chosen clients send garbage.

For the fault-tolerance tests and the soak benchmark: client `c` in
`faults` sends, instead of its real update, one with a NaN (`nan`), an Inf
(`inf`) or an absurdly large norm (`huge`). The fault is part of the
client's data, like every strategy's behaviour, so the server computation is
unchanged.
"""

from __future__ import annotations

import collections
import enum
from typing import Mapping

import numpy as np
import tensorflow as tf

from fedmeta_tf.meta import client_work as client_work_lib


class Fault(enum.IntEnum):
  NONE = 0
  NAN = 1
  INF = 2
  HUGE = 3


HUGE_VALUE = 1e12


class FaultInjectingClientWork(client_work_lib.ClientWork):
  """Wraps a strategy; the clients in `faults` corrupt their update."""

  def __init__(self, inner: client_work_lib.ClientWork,
               faults: Mapping[int, Fault | str]):
    self.inner = inner
    self.faults = {int(c): Fault[str(f).upper()] if isinstance(f, str)
                   else Fault(f) for c, f in faults.items()}

  def client_data_spec(self, image_shape):
    spec = collections.OrderedDict(self.inner.client_data_spec(image_shape))
    spec["fault"] = tf.TensorSpec([], tf.int32)
    return spec

  def make_client_data(self, client_id):
    data = collections.OrderedDict(self.inner.make_client_data(client_id))
    data["fault"] = np.int32(self.faults.get(client_id, Fault.NONE))
    return data

  def update(self, model, optimizer, weights, client_data, round_num):
    inner_data = {k: v for k, v in client_data.items() if k != "fault"}
    output = self.inner.update(model, optimizer, weights, inner_data,
                               round_num)
    fault = client_data["fault"]
    first = output.update[0]
    corrupted_first = tf.switch_case(fault, [
        lambda: first,
        lambda: first + np.float32(np.nan),
        lambda: first + np.float32(np.inf),
        lambda: first + np.float32(HUGE_VALUE),
    ])
    return client_work_lib.ClientOutput(
        update=[corrupted_first] + list(output.update[1:]), loss=output.loss)
