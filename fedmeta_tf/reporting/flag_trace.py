"""Traces a run to the committed flagfile its command names.

A run directory's `run_info.json` records the command that made it
(`python -m binaries.train_fedmeta --flagfile=configs/X.cfg ...`). `trace`
reads that flagfile as it is in the repository (following nested
--flagfile lines), compares each flag with what the run recorded (its
flags.json, JSON-typed), lists the command-line flags after the flagfile as
overrides, and says whether the flagfile changed since the run's commit.
`maker_of` finds the committed flagfile whose run writes a given directory.
"""

from __future__ import annotations

import glob
import math
import os
import shlex
import subprocess
from typing import Any, Mapping, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")
_MAX_DEPTH = 10


def _resolve(path: str, root: str) -> str:
  return path if os.path.isabs(path) else os.path.join(root, path)


def read_flagfile(path: str, root: str = REPO_ROOT, depth: int = 0
                  ) -> list[tuple[str, Optional[str]]]:
  """(name, value) of every flag line of the flagfile at `path` (relative to
  `root`), nested --flagfile lines expanded in place; value None for a bare
  `--name`. Raises OSError when a file is missing."""
  if depth > _MAX_DEPTH:
    raise OSError(f"--flagfile nesting deeper than {_MAX_DEPTH} at {path}")
  out = []
  with open(_resolve(path, root)) as f:
    for line in f:
      line = line.strip()
      if not line.startswith("-") or line.startswith(("#", "//")):
        continue
      name, eq, value = line.lstrip("-").partition("=")
      if name == "flagfile":
        out += read_flagfile(value, root, depth + 1)
      else:
        out.append((name, value if eq else None))
  return out


def parse_command(command: str) -> tuple[str, list[str], list[tuple]]:
  """(binary, flagfiles, overrides) of a recorded command: `binary` is the
  module after `-m` (or the script); overrides are the (name, value) flags
  after the first flagfile."""
  try:
    tokens = shlex.split(command)
  except ValueError:
    tokens = command.split()
  binary = ""
  if "-m" in tokens[:3]:
    i = tokens.index("-m")
    binary, tokens = (tokens[i + 1] if i + 1 < len(tokens) else ""), \
        tokens[i + 2:]
  elif len(tokens) > 1:
    binary, tokens = tokens[1], tokens[2:]
  flagfiles, overrides, i = [], [], 0
  while i < len(tokens):
    token = tokens[i]
    name, eq, value = token.lstrip("-").partition("=")
    if not eq and i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
      value, eq, i = tokens[i + 1], "=", i + 1
    if name == "flagfile":
      flagfiles.append(value)
    elif flagfiles and token.startswith("-"):
      overrides.append((name, value if eq else None))
    i += 1
  return binary, flagfiles, overrides


def _number(text: str) -> Optional[float]:
  try:
    return float(text)
  except (TypeError, ValueError):
    return None


def values_agree(text: Optional[str], value: Any) -> bool:
  """Whether a flagfile's text value names the run's JSON-typed `value`:
  "0.2,0.3" and [0.2, 0.3] or ["0.2", "0.3"], "3" and 3.0, "true" and True,
  "ranking" and "Vote.RANKING" (an enum's str)."""
  if isinstance(value, bool):
    text = "true" if text is None else text.lower()
    return text in (_TRUE if value else _FALSE)
  text = "" if text is None else text
  if isinstance(value, list):
    items = [t.strip() for t in text.split(",")] if text.strip() else []
    return len(items) == len(value) and all(
        values_agree(t, v) for t, v in zip(items, value))
  if value is None:
    return text.lower() in ("", "none")
  if isinstance(value, (int, float)):
    number = _number(text)
    return number is not None and math.isclose(number, value, rel_tol=1e-9)
  value = str(value)
  if text == value or text.lower() == value.split(".")[-1].lower():
    return True
  a, b = _number(text), _number(value)
  return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9)


def _is_path_suffix(text: str, path: str) -> bool:
  want = os.path.normpath(text).split(os.sep)
  have = os.path.normpath(path).split(os.sep)
  return have[-len(want):] == want


def compare(flagfile_flags, run_values: Mapping, implied: Mapping,
            skip=()) -> tuple[list, list, list]:
  """(agree, differ, unrecorded) flag names / (name, ours, run's) of a
  flagfile's flags against the run's values; `implied` ones (--from, the
  directory the run lies in) agree when they end the path."""
  final = dict(flagfile_flags)
  agree, differ, unrecorded = [], [], []
  for name, text in final.items():
    key = name
    if key not in run_values and key.startswith("no") and text is None and \
        isinstance(run_values.get(key[2:]), bool):
      key, text = key[2:], "false"
    if name in skip:
      continue
    if key in run_values:
      ok = values_agree(text, run_values[key])
      (agree if ok else differ).append(
          name if ok else (name, text, run_values[key]))
    elif key in implied:
      ok = _is_path_suffix(text or "", implied[key])
      (agree if ok else differ).append(
          name if ok else (name, text, implied[key]))
    else:
      unrecorded.append(name)
  return agree, differ, unrecorded


def _git(root: str, *args) -> Optional[subprocess.CompletedProcess]:
  try:
    return subprocess.run(["git", "-C", root, *args], capture_output=True,
                          text=True, timeout=20, check=False)
  except (OSError, subprocess.SubprocessError):
    return None


def git_state(path: str, commit: Optional[str], root: str = REPO_ROOT
              ) -> tuple[str, str]:
  """(how the flagfile stands in the repository: "as committed", "with
  uncommitted changes", "not committed" or "outside the repository"; a note
  on whether it changed since the run's `commit`, or "")."""
  full = os.path.abspath(_resolve(path, root))
  if os.path.relpath(full, root).startswith(".."):
    return "outside the repository", ""
  status = _git(root, "status", "--porcelain", "--", full)
  if status is None or status.returncode != 0:
    return "in the working tree", ""
  state = ("as committed" if not status.stdout.strip() else
           "not committed" if status.stdout.startswith("??") else
           "with uncommitted changes")
  note = ""
  base = (commit or "").rstrip("+")
  if base:
    diff = _git(root, "diff", "--quiet", base, "--", full)
    if diff is not None and diff.returncode in (0, 1):
      note = (f"unchanged since the run's commit {base}" if diff.returncode
              == 0 else f"changed since the run's commit {base}")
  return state, note


def _run_dir_of(binary: str, values: Mapping, cfg: str) -> Optional[str]:
  """Where `python -m binary --flagfile=cfg` writes (as the binaries name
  their directories), from the flagfile's own values."""
  name = binary.rsplit(".", 1)[-1]
  if name in ("train_fedmeta", "train_supervised"):
    return os.path.join(values.get("root_output_dir") or "runs",
                        values.get("experiment_name") or
                        os.path.splitext(os.path.basename(cfg))[0])
  source = values.get("from")
  if not source:
    return None
  if name == "finetune":
    return os.path.join(source, "finetune")
  if name == "prune":
    return os.path.join(source, values.get("output_subdir") or "pruning")
  if name == "defend":
    local = values.get("local_meta_iterations") or "0"
    default = (values.get("defense") or "matching") + (
        f"_local{local}" if local not in ("0", "") else "")
    return os.path.join(source, "defend", values.get("name") or default)
  return None


def maker_of(run_dir: str, root: str = REPO_ROOT) -> Optional[str]:
  """The command of the committed flagfile (configs/*.cfg, its `# Command:`
  header) that writes `run_dir` (relative to the current directory), or
  None."""
  want = os.path.normpath(os.path.relpath(os.path.abspath(run_dir)))
  for cfg in sorted(glob.glob(os.path.join(root, "configs", "*.cfg"))):
    with open(cfg) as f:
      first = f.readline()
    if not first.startswith("# Command:"):
      continue
    command = first.split(":", 1)[1].strip()
    binary = parse_command(command)[0]
    try:
      values = dict(read_flagfile(cfg, root))
    except OSError:
      continue
    made = _run_dir_of(binary, values, cfg)
    if made and os.path.normpath(made) == want:
      return command
  return None


def _flag(name: str, text: Optional[str]) -> str:
  return f"`--{name}`" if text is None else f"`--{name}={text}`"


def trace_lines(command: str, commit: Optional[str], run_values: Mapping,
                implied: Mapping, source: str, root: str = REPO_ROOT
                ) -> list[str]:
  """Markdown lines tracing the run's `command` to its flagfile(s): the
  flags that agree with the run's values (`source` says where they were
  read), those that differ, the overrides after the flagfile."""
  _, flagfiles, overrides = parse_command(command)
  if not flagfiles:
    return ["No flagfile in the command: every setting is on it."]
  lines = []
  for cfg in flagfiles:
    try:
      flagfile_flags = read_flagfile(cfg, root)
    except OSError:
      lines.append(f"Flagfile `{cfg}` is not in the repository: nothing to "
                   "compare the run with.")
      continue
    state, note = git_state(cfg, commit, root)
    agree, differ, unrecorded = compare(flagfile_flags, run_values, implied,
                                        skip={n for n, _ in overrides})
    total = len(agree) + len(differ)
    if not differ and not unrecorded:
      text = f"all {total} flags agree with the run's {source}"
    else:
      text = f"{len(agree)} of {total} flags the run recorded agree"
      if differ:
        text += "; differ: " + ", ".join(
            f"{_flag(n, t)} (the run: `{json_text(v)}`)"
            for n, t, v in differ)
      if unrecorded:
        text += ("; not recorded by the run: " +
                 ", ".join(f"`--{n}`" for n in unrecorded))
    lines.append(f"Flagfile `{cfg}` {state}: {text}" +
                 (f"; {note}." if note else "."))
  if overrides:
    lines.append("Overrides after the flagfile on the command line: " +
                 ", ".join(_flag(n, t) for n, t in overrides) + ".")
  return lines


def json_text(value: Any) -> str:
  if isinstance(value, list):
    return ",".join(json_text(v) for v in value)
  if isinstance(value, bool):
    return "true" if value else "false"
  return "" if value is None else str(value)
