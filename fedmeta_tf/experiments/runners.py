"""`make_runner`: the round driver of a runtime, for every experiment.

    tff        the TFF iterative process (`tff_process/runner.py`; needs an
               active TFF context, `tff_process/contexts.py`)
    inprocess  the same round in this Python process, without TFF
               (`runtime/inprocess.py`)

TFF is imported only when the `tff` runtime is asked for.
"""

from __future__ import annotations

from typing import Callable, Optional

import tensorflow as tf

from fedmeta_tf.aggregation import aggregators
from fedmeta_tf.meta import round_runner
from fedmeta_tf.runtime import inprocess

RUNTIMES = ("tff", "inprocess")
DEFAULT_CLIENT_CHUNK = inprocess.DEFAULT_CHUNK_ITERATIONS


def make_runner(runtime, *, model_fn: Callable[[], tf.keras.Model],
                client_work, inner_lr: float,
                aggregator: aggregators.Aggregator, image_shape,
                output_dir: Optional[str] = None,
                client_chunk: int = DEFAULT_CLIENT_CHUNK
                ) -> round_runner.RoundRunner:
  """The round runner of `runtime`.

  Args:
    runtime: `tff` or `inprocess` (or an enum member with that value).
    model_fn: builds a fresh Keras model.
    client_work: the strategy clients run (`meta/client_work.py` or
      `supervised/client_work.py`).
    inner_lr: the clients' learning rate.
    aggregator: the server's aggregator (`aggregators.parse_aggregator`).
    image_shape: (H, W, ch) of the client data (typed by the TFF process).
    output_dir: the run directory, where the in-process driver keeps its
      client checkpoints (None: none); the TFF runtime resumes at round
      boundaries only.
    client_chunk: the in-process driver's outer iterations per chunk of a
      Reptile client's work (progress and client checkpoints after each).

  Raises:
    ValueError: unknown runtime.
  """
  kind = getattr(runtime, "value", runtime)
  if kind == "tff":
    from fedmeta_tf.tff_process import runner  # pylint: disable=g-import-not-at-top
    return runner.TffRunner(model_fn=model_fn, client_work=client_work,
                            inner_lr=inner_lr, aggregator=aggregator,
                            image_shape=image_shape)
  if kind == "inprocess":
    return inprocess.InProcessRunner(model_fn=model_fn,
                                     client_work=client_work,
                                     inner_lr=inner_lr, aggregator=aggregator,
                                     chunk_iterations=client_chunk,
                                     output_dir=output_dir)
  raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got "
                   f"{runtime!r}")
