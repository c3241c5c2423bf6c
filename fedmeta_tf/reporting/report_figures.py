"""The figures of the runs a reproduction report shows, copied beside it.

Each run's PNGs (none from saved_model/, tensorboard/, checkpoints/, units/
or a sub-run: a sub-directory with its own flags.json, run_info.json,
summary.json or table) are copied to `<figures dir>/<run slug>/`, so the
page and its figures can be committed without the git-ignored runs/ tree.
A pruning run over a sweep owns the figures in each member's output
sub-directory. Copies are atomic (tmp + os.replace); figures of a rendered
run that it no longer has are removed.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Sequence

WARN_BYTES = 300 * 1024
_SKIP_DIRS = frozenset({"saved_model", "tensorboard", "checkpoints", "units"})
_RUN_MARKERS = ("flags.json", "run_info.json", "summary.json", "stages.md",
                "table.md", "sweep.json")


def is_run_dir(path: str) -> bool:
  return any(os.path.isfile(os.path.join(path, m)) for m in _RUN_MARKERS)


def sweep_members(sweep_dir: str) -> list[str]:
  """The member names of the sweep in `sweep_dir` (sweep.json), or []."""
  try:
    with open(os.path.join(sweep_dir, "sweep.json")) as f:
      return [m["name"] for m in json.load(f)["members"]]
  except (OSError, ValueError, KeyError, TypeError):
    return []


def _own_pngs(run_path: str) -> list[tuple[str, str]]:
  out = []
  for root, dirs, files in os.walk(run_path):
    dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and
                     not is_run_dir(os.path.join(root, d)))
    for f in sorted(files):
      if f.lower().endswith(".png"):
        path = os.path.join(root, f)
        out.append((path, os.path.relpath(path, run_path)))
  return out


def run_figures(run_path: str) -> list[tuple[str, str]]:
  """(source path, name of the copy) of each figure of the run."""
  figures = _own_pngs(run_path)
  parent, sub = os.path.split(os.path.normpath(run_path))
  for member in sweep_members(parent):  # a pruning run over a sweep
    member_out = os.path.join(parent, member, sub)
    if os.path.isdir(member_out):
      figures += [(p, os.path.join(member, r))
                  for p, r in _own_pngs(member_out)]
  return [(p, r.replace(os.sep, "-")) for p, r in figures]


def slugs(run_paths: Sequence[str]) -> list[str]:
  """A folder name per run: its path after the last `runs` component
  (`omniglot_attack_a-finetune`), else relative to the runs' common
  parent."""
  full = [os.path.normpath(os.path.abspath(p)) for p in run_paths]
  base = os.path.commonpath([os.path.dirname(p) for p in full])
  out = []
  for path in full:
    parts = path.split(os.sep)
    if "runs" in parts[:-1]:
      parts = parts[len(parts) - parts[::-1].index("runs"):]
    else:
      parts = os.path.relpath(path, base).split(os.sep)
    out.append("-".join(p for p in parts if p not in ("", ".", "..")))
  return out


def copy_figures(figures: Sequence[tuple[str, str]], dest_dir: str
                 ) -> tuple[list[str], list[str]]:
  """Copies `figures` ((source, name)) into `dest_dir`, removes the files
  there that are not among them; returns (the copies' paths, warnings)."""
  names = {name for _, name in figures}
  if os.path.isdir(dest_dir):
    for f in os.listdir(dest_dir):
      path = os.path.join(dest_dir, f)
      if f not in names and os.path.isfile(path):
        os.remove(path)
  if not figures:
    if os.path.isdir(dest_dir) and not os.listdir(dest_dir):
      os.rmdir(dest_dir)
    return [], []
  os.makedirs(dest_dir, exist_ok=True)
  copies, warnings = [], []
  for source, name in figures:
    dest = os.path.join(dest_dir, name)
    shutil.copyfile(source, dest + ".tmp")
    os.replace(dest + ".tmp", dest)
    copies.append(dest)
    size = os.path.getsize(dest)
    if size > WARN_BYTES:
      warnings.append(f"warning: figure {dest} is {size // 1024} KB (over "
                      f"{WARN_BYTES // 1024} KB) to commit")
  return copies, warnings
