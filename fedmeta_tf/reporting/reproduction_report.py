"""The reproduction report: our numbers next to the papers' own figures.

`build_report(run_dirs, output_path)` writes one Markdown page: a summary
table (experiment | what | ours | paper | run), then a section per run
directory with the command that made it, the committed flagfile it traces
to (`flag_trace.py`: each flag compared with the run's flags.json), the
machine and commit (run_info.json), the wall time, its numbers beside the
paper's (`paper_rows.py`), its tables (stages.md, table.md) and its figures,
copied next to the page (`report_figures.py`) so that the page can be
committed without the runs/ tree. Runs of every binary are shown; missing
keys only leave cells empty.
"""

from __future__ import annotations

import calendar
import csv
import dataclasses
import json
import os
import time
from typing import Any, Mapping, Optional, Sequence

from fedmeta_tf.reporting import flag_trace
from fedmeta_tf.reporting import report_figures
from fedmeta_tf.reporting import report_page

_PARENT_DEPTH = {"finetune": 1, "prune": 1, "defend": 2}


@dataclasses.dataclass
class Run:
  """What the report knows about one run directory."""

  path: str
  kind: str  # train_fedmeta, finetune, defend, prune, train_supervised, unknown
  flags: dict
  run_info: dict
  summary: dict
  metrics_rows: list[dict]
  tables: list[str]
  base_flags: dict = dataclasses.field(default_factory=dict)
  members: list[dict] = dataclasses.field(default_factory=list)
  sweep_dir: str = ""
  member_sub: str = ""
  paper_table: Optional[str] = None

  @property
  def name(self) -> str:
    return os.path.basename(os.path.normpath(self.path))

  @property
  def dataset(self) -> str:
    for flags in (self.flags, self.base_flags):
      if flags.get("dataset") or flags.get("task"):
        return str(flags.get("dataset") or flags.get("task"))
    return "?"

  @property
  def parent(self) -> Optional[str]:
    depth = _PARENT_DEPTH.get(self.kind)
    path = os.path.abspath(self.path)
    for _ in range(depth or 0):
      path = os.path.dirname(path)
    return path if depth else None

  def member_summary(self, member: str) -> dict:
    return read_json(os.path.join(self.sweep_dir, member, self.member_sub,
                                  "summary.json"))


def read_json(path: str) -> dict:
  try:
    with open(path) as f:
      value = json.load(f)
    return value if isinstance(value, dict) else {}
  except (OSError, ValueError):
    return {}


def _maybe_float(text: str) -> Any:
  try:
    return float(text)
  except (TypeError, ValueError):
    return text


def _csv_rows(path: str) -> list[dict]:
  """metrics.csv rows, empty cells dropped, numbers as floats."""
  try:
    with open(path, newline="") as f:
      rows = list(csv.DictReader(f))
  except OSError:
    return []
  return [{k: _maybe_float(v) for k, v in r.items() if v not in (None, "")}
          for r in rows]


def _kind(path: str, run_info: dict, summary: dict) -> str:
  """The binary that wrote the run: from its command, else its files."""
  if run_info.get("command"):
    binary = flag_trace.parse_command(run_info["command"])[0]
    return binary.rsplit(".", 1)[-1].removesuffix(".py")
  has = lambda f: os.path.isfile(os.path.join(path, f))  # pylint: disable=unnecessary-lambda-assignment
  if has("experiment.json"):
    return "train_fedmeta"
  if "defense" in summary and "mean_over_clients" in summary:
    return "defend"
  if os.path.basename(os.path.normpath(path)) == "finetune":
    return "finetune"
  if has("sweep.json") or has("config.json"):
    return "train_supervised"
  if has("table.md") or has("stages.md"):
    return "prune"
  return "unknown"


def _sweep(run: Run) -> None:
  """Fills in the sweep a training run is, or a pruning run defends, and the
  paper table its pruning run names (--paper_table)."""
  if run.kind == "prune":
    run.sweep_dir, run.member_sub = os.path.split(
        os.path.normpath(os.path.abspath(run.path)))
    run.paper_table = run.flags.get("paper_table")
  elif os.path.isfile(os.path.join(run.path, "sweep.json")):
    run.sweep_dir = run.path
    for sub in sorted(os.listdir(run.path)):
      table = read_json(os.path.join(run.path, sub, "flags.json")).get(
          "paper_table")
      run.paper_table = run.paper_table or table
  else:
    return
  sweep = read_json(os.path.join(run.sweep_dir, "sweep.json"))
  run.members = [m for m in sweep.get("members", []) if isinstance(m, dict)
                 and m.get("name")]


def load_run(path: str) -> Run:
  """Reads a run directory; raises ValueError when it does not exist."""
  if not os.path.isdir(path):
    raise ValueError(f"run directory {path!r} does not exist")
  run_info = read_json(os.path.join(path, "run_info.json"))
  summary = read_json(os.path.join(path, "summary.json"))
  run = Run(path=path, kind=_kind(path, run_info, summary),
            flags=read_json(os.path.join(path, "flags.json")),
            run_info=run_info, summary=summary,
            metrics_rows=_csv_rows(os.path.join(path, "metrics.csv")),
            tables=[os.path.join(path, t) for t in ("stages.md", "table.md")
                    if os.path.isfile(os.path.join(path, t))])
  if run.parent:
    run.base_flags = read_json(os.path.join(run.parent, "flags.json"))
  _sweep(run)
  return run


def _duration(seconds: float) -> str:
  seconds = round(seconds)
  if seconds < 60:
    return f"{seconds} s"
  if seconds < 3600:
    return f"{seconds // 60} min {seconds % 60} s"
  return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def wall_time(run: Run) -> str:
  """The run's wall time: summary.json's, its sweep members' summed, else
  from run_info.json's start to the last file it wrote."""
  if isinstance(run.summary.get("wall_seconds"), (int, float)):
    return _duration(run.summary["wall_seconds"])
  walls = [run.member_summary(m["name"]).get("wall_seconds")
           for m in run.members]
  if walls and all(isinstance(w, (int, float)) for w in walls):
    return f"{_duration(sum(walls))} (sum over its {len(walls)} runs)"
  started = run.run_info.get("started_utc")
  try:
    start = calendar.timegm(time.strptime(started, "%Y-%m-%dT%H:%M:%SZ"))
  except (TypeError, ValueError):
    return "not recorded"
  dirs = [run.path] + [os.path.join(run.sweep_dir, m["name"], run.member_sub)
                       for m in run.members]
  mtimes = [os.path.getmtime(os.path.join(d, f)) for d in dirs
            if os.path.isdir(d) for f in os.listdir(d)
            if os.path.isfile(os.path.join(d, f))]
  if not mtimes:
    return "not recorded"
  return (f"about {_duration(max(mtimes) - start)} (from the start in "
          "run_info.json to the last file written)")


def _missing(run_dirs: Sequence[str]) -> Optional[str]:
  """One line naming the missing run directories and the committed
  flagfiles that make them; None when all exist."""
  parts = []
  for d in run_dirs:
    if not os.path.isdir(d):
      maker = flag_trace.maker_of(d)
      parts.append(f"run directory {d!r} does not exist" + (
          f": run {maker} first" if maker else
          " (no committed flagfile in configs/ writes it)"))
  return "; ".join(parts) or None


def figures_dir(output_path: str) -> str:
  """Where the page's figures go: `<page stem>_figures/` beside it."""
  stem = os.path.splitext(os.path.basename(output_path))[0]
  return os.path.join(os.path.dirname(os.path.abspath(output_path)),
                      f"{stem}_figures")


def build_report(run_dirs: Sequence[str], output_path: str,
                 paper_tables: Optional[Mapping] = None,
                 command: Optional[str] = None) -> tuple[str, list[str]]:
  """Writes the report for `run_dirs` to `output_path` and their figures to
  `figures_dir(output_path)/<run>/`; returns (its text, warnings about
  figures too large to commit comfortably). `paper_tables`: the pruning
  paper's tables by name (`defenses/pruning/paper_tables.TABLES`);
  `command`: the command that writes the page, shown on it."""
  if not run_dirs:
    raise ValueError("no run directories given")
  missing = _missing(run_dirs)
  if missing:
    raise ValueError(missing)
  runs = [load_run(d) for d in run_dirs]
  root = figures_dir(output_path)
  figures, warnings = {}, []
  for run, slug in zip(runs, report_figures.slugs(run_dirs)):
    copies, warned = report_figures.copy_figures(
        report_figures.run_figures(run.path), os.path.join(root, slug))
    figures[run.path] = copies
    warnings += warned
  walls = {run.path: wall_time(run) for run in runs}
  text = report_page.render(runs, figures, output_path, walls, paper_tables,
                            command)
  os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
  tmp = output_path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, output_path)
  if os.path.isdir(root) and not os.listdir(root):
    os.rmdir(root)
  return text, warnings


def default_output(run_dirs: Sequence[str]) -> Optional[str]:
  """report.md next to the first run directory."""
  first = os.path.normpath(run_dirs[0])
  return os.path.join(os.path.dirname(first) or ".", "report.md")
