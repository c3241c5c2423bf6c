"""What a long run shows while it runs: bars on a terminal, lines elsewhere.

Three kinds of work take long enough to watch: the rounds of a schedule
(`experiments/rounds.py`), a round's client work, counted in outer
iterations (`runtime/inprocess.py`; the attacker's is hours at the paper's
size), and evaluations, counted in episodes (`evaluation/episodes_eval.py`,
`experiments/training.py`). Each opens a `bar`; `line` reports a finished
round in one concise line.

Where it goes is set once per process (`configure`, from a binary's
`--progress` flag):

    auto   bars when stderr is a terminal, else lines (the default)
    bars   tqdm bars with rate and ETA, and the round lines above them
    lines  no bars: one line per round (a log file, a batch job)
    none   neither (the test suite's in-process runs)

Everything goes to stderr, so stdout holds a binary's results only.
"""

from __future__ import annotations

import contextlib
import enum
import os
import sys
import threading
from typing import Iterator, Mapping, Optional

import tqdm


class Mode(enum.Enum):
  AUTO = "auto"
  BARS = "bars"
  LINES = "lines"
  NONE = "none"


_mode = Mode.AUTO


def configure(mode) -> None:
  """Sets what this process shows (`Mode` or its value)."""
  global _mode
  try:
    _mode = Mode(getattr(mode, "value", mode))
  except ValueError:
    raise ValueError(f"progress must be one of "
                     f"{', '.join(m.value for m in Mode)}, got {mode!r}"
                     ) from None


def _stream():
  return sys.stderr


def bars_on() -> bool:
  if _mode is Mode.AUTO:
    isatty = getattr(_stream(), "isatty", None)
    return bool(isatty and isatty())
  return _mode is Mode.BARS


def lines_on() -> bool:
  return _mode is not Mode.NONE


class Counter:
  """Advances a bar from any thread (`update(n)`); a no-op without bars."""

  def __init__(self, bar: Optional[tqdm.tqdm]):
    self._bar = bar
    self._lock = threading.Lock()

  def update(self, n: int = 1) -> None:
    if self._bar is not None:
      with self._lock:
        self._bar.update(n)

  def describe(self, text: str) -> None:
    """Replaces the text after the bar (e.g. the last chunk's loss)."""
    if self._bar is not None:
      with self._lock:
        self._bar.set_postfix_str(text, refresh=False)


@contextlib.contextmanager
def bar(total: int, desc: str, unit: str, *, leave: bool = False
        ) -> Iterator[Counter]:
  """A bar of `total` `unit`s while the block runs (rate and ETA).

  Bars opened while another is open stack below it (a round's client work
  under the rounds bar); `leave=False` removes the bar when it is done.
  """
  if not bars_on() or total <= 0:
    yield Counter(None)
    return
  sized = _terminal_has_size()
  with tqdm.tqdm(total=total, desc=desc, unit=unit, leave=leave,
                 file=_stream(), dynamic_ncols=sized,
                 ncols=None if sized else 100, nrows=None if sized else 40,
                 smoothing=0.1) as progress_bar:
    yield Counter(progress_bar)


def _terminal_has_size() -> bool:
  """False for a pseudo-terminal of zero rows and columns (`script`, some
  job runners), where tqdm would hide every bar: a fixed size is used."""
  try:
    size = os.get_terminal_size(_stream().fileno())
  except (AttributeError, OSError, ValueError):
    return False
  return size.columns > 0 and size.lines > 0


def line(text: str) -> None:
  """One line of progress (above any bars)."""
  if not lines_on():
    return
  if bars_on():
    tqdm.tqdm.write(text, file=_stream())
  else:
    print(text, file=_stream(), flush=True)


# Row keys a round line leaves out: configuration and bookkeeping.
_LEFT_OUT = ("clients",)


def format_row(row: Mapping[str, object]) -> str:
  """The metrics of a round, concisely: accuracies as percentages under
  their short names ("backdoor_val_accuracy" -> "backdoor val 78.5%"),
  other numbers with 4 significant digits; zero counters left out."""
  parts = []
  for key, value in row.items():
    if key in _LEFT_OUT or isinstance(value, str):
      continue
    try:
      number = float(value)
    except (TypeError, ValueError):
      continue
    name = key.replace("_", " ")
    if key.endswith("_accuracy"):
      parts.append(f"{name.removesuffix(' accuracy')} {100 * number:.1f}%")
    elif number == int(number):
      if number:
        parts.append(f"{name} {int(number)}")
    else:
      parts.append(f"{name} {number:.4g}")
  return ", ".join(parts)
