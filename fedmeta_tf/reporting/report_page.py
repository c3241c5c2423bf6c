"""The Markdown of the reproduction report (`reproduction_report.py`)."""

from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence

from fedmeta_tf.reporting import flag_trace
from fedmeta_tf.reporting import paper_rows

NO_COMMAND = "command not recorded (run before run_info.json existed)"
INTRO = (
    "Our figures next to the papers', from the run directories of the "
    "CPU-sized flagfiles; under each run, the command that made it, the "
    "committed flagfile it traces to, the machine and the commit. "
    "Percentages are accuracies: averaged over the run's evaluation episodes "
    "(meta-learning), on the test set (pruning paper). The papers: *Defending "
    "against Backdoor Attacks in Federated Meta-Learning* (main paper), "
    "Sections 3.4 and 4.2; *Mitigating Backdoor Attacks in Federated "
    "Learning* (pruning paper), Section V. The CPU-sized runs are smaller "
    "than the papers' (fewer rounds, iterations and episodes: see each "
    "flagfile's header), so their figures are compared in kind, not to the "
    "point.")
_SETTINGS = ("dataset", "attack", "case", "defense", "deltas", "aggregator",
             "rounds", "num_clients", "shots", "eval_shots", "runtime", "vote",
             "paper_table", "seed")


def _cell(text) -> str:
  return str(text).replace("|", "\\|").replace("\n", " ")


def _describe(run) -> str:
  parts = [f"{k}={flag_trace.json_text(run.flags[k])}" for k in _SETTINGS
           if run.flags.get(k) not in (None, "", "none", [])]
  return ", ".join(parts)


def _trace(run) -> list[str]:
  command = run.run_info.get("command")
  if not command:
    return []
  if run.flags:
    values, source = run.flags, "flags.json"
  else:
    values = {k: v for k, v in run.summary.items()
              if isinstance(v, (int, float, str, bool, list))}
    source = "summary.json"
  implied = {"from": run.parent} if run.parent else {}
  return flag_trace.trace_lines(command, run.run_info.get("commit"), values,
                                implied, source)


def _facts(run, wall: str) -> list[str]:
  info = run.run_info
  command = info.get("command")
  lines = [f"- Command: `{command}`" if command else f"- {NO_COMMAND}"]
  lines += [f"- {line}" for line in _trace(run)]
  if info.get("machine"):
    lines.append(f"- Machine: {str(info['machine']).removeprefix('machine: ')}")
  if info.get("commit") or info.get("started_utc"):
    lines.append(f"- Commit: {info.get('commit') or 'not recorded'}; "
                 f"started {info.get('started_utc') or '?'} (UTC)")
  lines.append(f"- Wall time: {wall}")
  settings = _describe(run)
  if settings:
    lines.append(f"- Settings (flags.json): {settings}")
  return lines


def _table(path: str) -> list[str]:
  """A run's Markdown table, its headings made bold (the page has its own)."""
  with open(path) as f:
    text = f.read().strip()
  return [f"**{line.lstrip('#').strip()}**" if line.startswith("#") else line
          for line in text.splitlines()]


def _section(run, rows, wall: str, figures: Sequence[str], base: str,
             title: str) -> list[str]:
  lines = ["", f"## {title}: `{run.path}`", ""] + _facts(run, wall) + [""]
  if rows:
    lines += ["| what | ours | paper |", "|---|---|---|"]
    lines += [f"| {_cell(r.what)} | {_cell(r.ours)} | {_cell(r.paper)} |"
              for r in rows]
    lines.append("")
  else:
    lines += ["(no summary.json or metrics.csv yet)", ""]
  for table in run.tables:
    lines += [f"From `{os.path.basename(table)}`:", ""] + _table(table) + [""]
  for figure in figures:
    rel = os.path.relpath(figure, base).replace(os.sep, "/")
    lines += [f"![{run.name}: {os.path.basename(figure)}]({rel})", ""]
  return lines


def render(runs: Sequence, figures: Mapping[str, Sequence[str]],
           output_path: str, walls: Mapping[str, str],
           paper_tables: Optional[Mapping] = None,
           command: Optional[str] = None) -> str:
  """The page; `figures` and `walls` by run path (figure links relative to
  `output_path`)."""
  base = os.path.dirname(os.path.abspath(output_path))
  lines = ["# Reproduction report", ""]
  if command:
    lines += [f"Written by `{command}`.", ""]
  lines += [INTRO, "", "| experiment | what | ours | paper | run |",
            "|---|---|---|---|---|"]
  sections = []
  for run in runs:
    title = paper_rows.experiment(run, paper_tables)
    rows = paper_rows.rows(run, paper_tables)
    summary = [r for r in rows if r.in_summary]
    if not summary:
      lines.append(f"| {_cell(title)} | (no summary.json or metrics.csv "
                   f"yet) | | | `{run.path}` |")
    lines += [f"| {_cell(title)} | {_cell(r.what)} | {_cell(r.ours)} | "
              f"{_cell(r.paper)} | `{run.path}` |" for r in summary]
    sections += _section(run, rows, walls[run.path], figures[run.path],
                         base, title)
  return "\n".join(lines + sections) + "\n"
