"""The one round loop: resume, metrics release, timing, checkpoints.

Every federated run is a schedule of rounds over this loop: benign federated
Reptile (the initial model scored as round 0, then the rounds of Algorithm 1,
main paper Section 2.1), the attack experiment (pre-training rounds, the
pre-trained model as round 0, attack and benign rounds: Section 3.4) and
supervised FedAvg (pruning paper, Section III). A `Round` is a function of
the server state that returns the next state and a row of metrics.

After every checkpointed round the loop saves the state with the run's
`extra` values (`checkpoints.RoundCheckpointer`, version = the server
round). Re-running a killed run (SIGKILL included) skips the rounds already
saved and replays the rest; their seeds are functions of the round, so the
metrics and models equal an uninterrupted run's. Seconds go to `timing.csv`,
apart from the metrics, for the same reason.

While it runs, a bar counts the rounds left and each round ends with one
concise line (`reporting/progress.py`): its name, its metrics as
percentages, its seconds. The full row goes to the absl log (DEBUG:
`--verbosity=1`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Iterable, Optional

from absl import logging

from fedmeta_tf.experiments import checkpoints
from fedmeta_tf.meta import weights as w
from fedmeta_tf.models import export
from fedmeta_tf.reporting import progress
from fedmeta_tf.reporting import release


@dataclasses.dataclass(frozen=True)
class Round:
  """One round of a schedule.

  Attributes:
    version: the checkpoint version saved after it (the server round,
      counted over every phase); a resumed run skips the rounds whose
      version it has saved. Versions increase along a schedule.
    key: the key of its row in `metrics`.
    step: state -> (next state, row of metrics).
    metrics: where the row is released (None: the row is only logged).
    name: what the log calls it.
    checkpoint: False: nothing is saved after it; its state and seconds
      carry into the next round, which is saved under the same version.
    timed: False: its seconds go into no timing row (an evaluation of the
      initial model, before any training).
  """

  version: int
  key: int
  step: Callable[[Any], tuple[Any, dict]]
  metrics: Optional[release.MetricsRelease] = None
  name: str = "round"
  checkpoint: bool = True
  timed: bool = True


class RoundLoop:
  """Runs schedules of rounds, from the latest checkpoint of a run.

  Attributes:
    state: the server state (the latest checkpoint's when resumed).
    extra: the experiment's values saved with each checkpoint, a flat dict
      of Python scalars (steps update it; types are kept on resume).
    resumed: whether a checkpoint was found.
    done: the version of that checkpoint (0 when none).
    seconds: the timed rounds' wall-clock seconds, earlier runs included.
  """

  def __init__(self, state: Any, *, output_dir: Optional[str],
               extra: Optional[dict] = None,
               checkpoint_dir: Optional[str] = None,
               timing_key: str = "round"):
    """Loads the latest checkpoint under `checkpoint_dir` (default
    `<output_dir>/checkpoints`); `output_dir=None`: rounds in memory, with
    neither checkpoints nor timing (fine-tuning inside a defense)."""
    self.state, self.extra = state, dict(extra or {})
    self.resumed, self.done, self.seconds = False, 0, 0.0
    self._checkpointer = self._timing = None
    if output_dir is None:
      return
    self._checkpointer = checkpoints.RoundCheckpointer(
        checkpoint_dir or os.path.join(output_dir, "checkpoints"))
    self._timing = release.MetricsRelease(
        output_dir, name="timing", key_fieldname=timing_key,
        tensorboard=False)
    saved, values, done = self._checkpointer.load_latest(
        state, {**self.extra, "seconds": 0.0})
    if saved is None:
      return
    self.state, self.resumed, self.done = saved, True, done
    self.seconds = float(values["seconds"])
    self.extra = {k: type(v)(values[k]) for k, v in self.extra.items()}
    logging.info("resuming after server round %d from %s", done,
                 self._checkpointer.checkpoint_dir)

  def run(self, schedule: Iterable[Round]) -> Any:
    """Runs the rounds of `schedule` not saved yet; returns the last state."""
    schedule = list(schedule)
    last_key = {}  # "round 3/11": the last key of each kind of round
    for r in schedule:
      last_key[r.name] = max(last_key.get(r.name, 0), r.key)
    todo = [r for r in schedule
            if not (self.resumed and r.version <= self.done)]
    start = None
    with progress.bar(len(todo), "rounds", "round", leave=True) as counter:
      for r in todo:
        if start is None:  # the time since the last checkpoint
          start = time.time()
        self.state, row = r.step(self.state)
        if r.metrics is not None:
          r.metrics.release(row, key=r.key)
        counter.update(1)
        name = f"{r.name} {r.key}/{last_key[r.name]}"
        if not r.checkpoint:
          logging.debug("%s: %s", name, row)
          progress.line(f"{name}: {progress.format_row(row)}")
          continue
        seconds, start = time.time() - start, None
        if r.timed:
          self.seconds += seconds
          if self._timing is not None:
            self._timing.release({"round_seconds": seconds,
                                  "seconds": self.seconds}, key=r.version)
        if self._checkpointer is not None:
          self._checkpointer.save(r.version, self.state,
                                  {**self.extra, "seconds": self.seconds})
        logging.debug("%s: %s, %.1f s", name, row, seconds)
        progress.line(f"{name}: {progress.format_row(row)} ({seconds:.1f} s)")
    return self.state


def keep_model(path: str, weights, *, model=None,
               saved_model_dir: Optional[str] = None) -> None:
  """Keeps a global model a run must hand on (pre-trained, attacked, final):
  `weights` in `path` (.npz, written atomically) and, given a Keras `model`
  to carry them, as a SavedModel in `saved_model_dir`."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  release.save_weights_atomically(path, weights)
  if model is not None:
    w.assign(model.trainable_variables, weights)
    export.export_saved_model(model, saved_model_dir)
