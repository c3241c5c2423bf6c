"""Shared machinery of the flag-liveness tests (tests/binaries/flag_liveness_*).

Each test module holds, for one binary, a table of the flags that feed a
computation (`LIVE`: flag -> the changes that must change that computation's
output, each run against a cached baseline of the same context) and a table
of the flags that cannot change an output (`EXEMPT`: flag -> why). A meta-test
checks that the two tables cover exactly the flags the binary defines, so a
new flag has to be classified.

A case runs the binary's own `main()` with tiny settings (absl flagsaver), so
the whole path flag -> config -> computation -> files on disk is exercised,
and compares what the run wrote (`outputs`). The tiny runs execute their
tf.functions eagerly (`fast_tiny_runs`): the same Python code and ops, without
seconds of tracing per distinct configuration, and SavedModel exports are
replaced by a marker file (they add nothing a liveness test can see and cost
seconds each).

Binaries whose flags clash with train_fedmeta's in one process
(train_supervised, prune) run their cases in one subprocess each:
`python -m tests.binaries.flag_liveness <module> <spec.json> <out.json>`.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import glob
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Mapping, Optional

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


@dataclasses.dataclass(frozen=True)
class Change:
  """`flags` set on top of the context `context` must change the output."""
  flags: Mapping[str, Any]
  context: str = "base"
  # Why this case is expected to fail (a strict xfail), else None.
  xfail: Optional[str] = None

  def run_name(self, flag: str) -> str:
    text = "_".join(f"{k}-{v}" for k, v in sorted(self.flags.items()))
    digest = hashlib.sha1(f"{self.context}/{text}".encode()).hexdigest()[:8]
    return f"{flag}_{digest}"


def params(live: Mapping[str, list[Change]]):
  """pytest params (flag, change) with readable ids."""
  import pytest  # pylint: disable=g-import-not-at-top
  out = []
  for flag, changes in live.items():
    for change in changes:
      shown = ",".join(f"{k}={v}" for k, v in change.flags.items())
      marks = ([pytest.mark.xfail(strict=True, reason=change.xfail)]
               if change.xfail else [])
      out.append(pytest.param(flag, change, id=f"{change.context}:{shown}",
                              marks=marks))
  return out


def binary_flags(module) -> set[str]:
  """The flags `module` (a binary) defines, with its `binaries.*` helpers.

  A flag counts when it is defined in the binary's module or one of the
  `binaries.*` modules it imports (attack_flags, from_run_flags), or held by
  a module-level FlagHolder there (flags defined through a binaries.common
  helper, e.g. `--parallelism`, are registered to binaries.common, which
  every binary imports).
  """
  modules = [module] + [
      v for v in vars(module).values()
      if inspect.ismodule(v) and v.__name__.startswith("binaries.")
      and v.__name__ not in ("binaries.common", "binaries.data_preflight")]
  names = set()
  for m in modules:
    names |= {f.name for f in flags.FLAGS.get_flags_for_module(m.__name__)}
    names |= {v.name for v in vars(m).values()
              if isinstance(v, flags.FlagHolder)}
  return names


def check_classified(defined: set[str], live, exempt) -> None:
  """Every defined flag is in exactly one of the two tables."""
  both = set(live) & set(exempt)
  assert not both, f"flags both live and exempt: {sorted(both)}"
  unclassified = defined - set(live) - set(exempt)
  assert not unclassified, (
      f"flags neither in LIVE nor in EXEMPT: {sorted(unclassified)}; add a "
      "case showing each changes an output, or say why it cannot")
  unknown = (set(live) | set(exempt)) - defined
  assert not unknown, f"classified flags the binary does not define: {unknown}"
  for flag, changes in live.items():
    assert changes, f"--{flag} is live but has no case"


def resolve(values: Mapping[str, Any], paths: Mapping[str, str]) -> dict:
  """`values` with "{name}" placeholders in strings replaced from `paths`."""
  return {k: v.format(**paths) if isinstance(v, str) and "{" in v else v
          for k, v in values.items()}


def write_glyphs_cache(data_dir: str, pool) -> None:
  """Stores `pool` as the glyphs cache under `data_dir`: --dataset=glyphs
  --data_dir=<data_dir> then loads it instead of rendering (~30 s)."""
  from fedmeta_tf.data import class_pool  # pylint: disable=g-import-not-at-top
  from fedmeta_tf.data import glyphs  # pylint: disable=g-import-not-at-top
  path = os.path.join(data_dir, "glyphs",
                      f"glyphs_seed0_v{glyphs._CACHE_VERSION}.npz")  # pylint: disable=protected-access
  os.makedirs(os.path.dirname(path), exist_ok=True)
  class_pool.save_class_pool_archive(pool, path)


def _digest_npz(path: str) -> str:
  import numpy as np  # pylint: disable=g-import-not-at-top
  h = hashlib.sha256()
  with np.load(path) as f:
    for name in sorted(f.files):
      a = f[name]
      h.update(f"{name}{a.dtype}{a.shape}".encode())
      h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def outputs(run_dir: str, patterns) -> dict[str, str]:
  """{relative path: content digest} of the files matching `patterns`.

  .npz files are digested by their arrays (the archive's zip timestamps
  vary); other files by their bytes; a pattern "names:<glob>" records only
  which files exist (SavedModel protos are not byte-reproducible). Patterns
  should leave out files with wall-clock times (summary.json, timing.csv).
  """
  result = {}
  for pattern in patterns:
    names_only = pattern.startswith("names:")
    pattern = pattern.removeprefix("names:")
    for path in sorted(glob.glob(os.path.join(run_dir, pattern),
                                 recursive=True)):
      if not os.path.isfile(path):
        continue
      rel = os.path.relpath(path, run_dir)
      if names_only:
        result[rel] = "exists"
      elif path.endswith(".npz"):
        result[rel] = _digest_npz(path)
      else:
        with open(path, "rb") as f:
          result[rel] = hashlib.sha256(f.read()).hexdigest()
  return result


def _stub_export(model, path):
  del model
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "stub"), "w") as f:
    f.write("SavedModel export replaced by tests/binaries/flag_liveness.py\n")
  return path


@contextlib.contextmanager
def fast_tiny_runs():
  """tf.functions run eagerly and SavedModel exports leave a marker only.

  The exports cost seconds each (tracing the serving functions) and write
  no figure a liveness test compares; --export (binaries.defend) still
  shows in which markers exist.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from fedmeta_tf.models import export  # pylint: disable=g-import-not-at-top
  eager = tf.config.functions_run_eagerly()
  originals = {name: getattr(export, name)
               for name in ("export_saved_model", "save_module_atomically")
               if hasattr(export, name)}
  tf.config.run_functions_eagerly(True)
  for name in originals:
    setattr(export, name, _stub_export)
  try:
    yield
  finally:
    for name, function in originals.items():
      setattr(export, name, function)
    tf.config.run_functions_eagerly(eager)


def run_main(main, program: str, values: Mapping[str, Any]) -> None:
  """Calls a binary's `main()` under `values` (flagsaver restores them)."""
  from absl.testing import flagsaver  # pylint: disable=g-import-not-at-top
  # Strings are parsed as on the command line (enum_class flags hold enums).
  values = {k: flags.FLAGS[k]._parse(v) if isinstance(v, str) else v  # pylint: disable=protected-access
            for k, v in values.items()}
  with flagsaver.flagsaver(**{k: v for k, v in values.items() if k != "from"}):
    if "from" in values:  # a Python keyword: not a flagsaver argument
      flags.FLAGS["from"].value = values["from"]
    main([program])


# Experiment 1 at toy size (binaries.train_fedmeta --attack=boosted, case
# (b): benign clients 1-3 fine-tune cases (b) and (c) from it).
ATTACK_RUN_FLAGS = dict(
    dataset="archive", runtime="inprocess", parallelism=1, rounds=1,
    num_clients=4, clients_per_round=3, min_updates=2, ways=3, shots=2,
    episodes_per_round=1, meta_batch=1, inner_steps=2, inner_batch=4,
    inner_lr=0.01, filters=4, eval_ways=3, eval_shots=2, eval_queries=2,
    eval_inner_steps=2, eval_episodes=2, eval_every=1, attack="boosted",
    pretrain_rounds=1, attacker_iterations=1, attacker_inner_steps=2,
    backdoor_eval_episodes=2, case="b", num_backdoor_classes=2,
    backdoor_benign_examples=4, attack_train_examples=2,
    attack_val_examples=3)


_ATTACK_RUNS = {}


def attack_run(name: str = "attack", **overrides) -> str:
  """A tiny Experiment 1 run directory, made once per process.

  Shared by the finetune, defend and prune liveness tests (each copies it or
  writes only under its own sub-directory); removed when the process exits.
  """
  if name in _ATTACK_RUNS:
    return _ATTACK_RUNS[name]
  from binaries import train_fedmeta  # pylint: disable=g-import-not-at-top
  from fedmeta_tf.data import class_pool  # pylint: disable=g-import-not-at-top
  from tests.conftest import tiny_pool  # pylint: disable=g-import-not-at-top
  if not _ATTACK_RUNS:
    root = tempfile.mkdtemp(prefix="flag_liveness_")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    _ATTACK_RUNS[None] = root
    class_pool.save_class_pool_archive(tiny_pool(num_classes=30, examples=12),
                                       os.path.join(root, "pool.npz"))
  root = _ATTACK_RUNS[None]
  with fast_tiny_runs():
    run_main(train_fedmeta.main, "train_fedmeta",
             dict(ATTACK_RUN_FLAGS, data_dir=os.path.join(root, "pool.npz"),
                  root_output_dir=root, experiment_name=name, **overrides))
  _ATTACK_RUNS[name] = os.path.join(root, name)
  return _ATTACK_RUNS[name]


# --- one subprocess per binary whose flags clash with train_fedmeta's -------

def run_in_subprocess(module: str, runs: Mapping[str, Mapping[str, Any]],
                      patterns, work_dir: str, timeout: int = 600) -> dict:
  """Runs `runs` ({name: flag values}) of binaries.<module> in one process.

  Returns {"flags": [flags the binary defines], "outputs": {name: outputs of
  run_dir}, "errors": {name: error text}}; each run's values must name its
  own output directory in "run_dir" (removed before the flags are set).
  """
  spec = os.path.join(work_dir, f"{module}_spec.json")
  out = os.path.join(work_dir, f"{module}_out.json")
  with open(spec, "w") as f:
    json.dump({"runs": runs, "patterns": list(patterns)}, f)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run(
      [sys.executable, "-m", "tests.binaries.flag_liveness", module, spec,
       out], cwd=REPO, env=env, capture_output=True, text=True,
      timeout=timeout)
  assert result.returncode == 0, result.stderr[-4000:]
  with open(out) as f:
    return json.load(f)


def _subprocess_main(module_name: str, spec_path: str, out_path: str) -> None:
  import importlib  # pylint: disable=g-import-not-at-top
  flags.FLAGS.mark_as_parsed()
  module = importlib.import_module(f"binaries.{module_name}")
  with open(spec_path) as f:
    spec = json.load(f)
  result = {"flags": sorted(binary_flags(module)), "outputs": {},
            "errors": {}}
  with fast_tiny_runs():
    for name, values in spec["runs"].items():
      values = dict(values)
      run_dir = values.pop("run_dir")
      try:
        run_main(module.main, module_name, values)
      except (Exception, SystemExit) as e:  # pylint: disable=broad-except
        result["errors"][name] = f"{type(e).__name__}: {e}"
        continue
      result["outputs"][name] = outputs(run_dir, spec["patterns"])
  with open(out_path, "w") as f:
    json.dump(result, f)


def assert_changed(flag: str, change: Change, baseline: dict,
                   changed: Optional[dict]) -> None:
  assert changed is not None, f"--{flag} run failed"
  assert baseline, "the baseline run wrote none of the compared files"
  assert changed != baseline, (
      f"--{flag}: setting {dict(change.flags)} (context {change.context!r}) "
      "left every output identical to the baseline run: the flag does not "
      "reach the computation")


def check_flag(run, contexts: Mapping[str, Mapping[str, Any]], flag: str,
               change: Change) -> None:
  """In-process cases: `run(name, values)` with `change` applied differs
  from the baseline run of the same context."""
  context = contexts[change.context]
  assert_changed(flag, change, run(change.context, context),
                 run(change.run_name(flag), dict(context, **change.flags)))


def check_flag_in_results(results: Mapping[str, Any], flag: str,
                          change: Change) -> None:
  """Subprocess cases (`run_in_subprocess`'s results): the same check."""
  name = change.run_name(flag)
  assert name not in results["errors"], results["errors"][name]
  assert_changed(flag, change, results["outputs"][change.context],
                 results["outputs"].get(name))


def check_results_reproducible(results: Mapping[str, Any]) -> None:
  """The baseline run again, after every other case, wrote the same."""
  assert not results["errors"], results["errors"]
  assert results["outputs"]["base"] == results["outputs"]["base_again"]


def from_run_runner(root: str, main, program: str,
                    paths: Mapping[str, str], patterns):
  """run(name, values) for binaries that start from a run directory
  (`--from`): each case runs on a fresh copy of its source run, once."""
  cache = {}

  def run_fn(name, values):
    if name not in cache:
      values = resolve(values, paths)
      run_dir = os.path.join(root, "copies", name)
      shutil.copytree(values["from"], run_dir)
      run_main(main, program, dict(values, **{"from": run_dir}))
      cache[name] = outputs(run_dir, patterns)
    return cache[name]

  return run_fn


if __name__ == "__main__":
  _subprocess_main(*sys.argv[1:4])
