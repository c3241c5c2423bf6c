"""The package's layers point down: no module imports from a layer above it.

BUILD.md ("Layers") lists them. Imports inside functions count too: a lazy
import is still a dependency.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "fedmeta_tf"

# Lowest first. A module may import from its own layer and the ones below.
LAYERS = (
    ("enums", "logs", "parallel", "reporting"),  # leaf utilities
    ("data",),                         # datasets, protocol, episodes
    ("models",),                       # Conv4, matching / ProtoNet heads
    ("meta",),                         # Algorithm 1's math, client work
    ("attacks", "defenses", "supervised", "aggregation"),  # attack, defense,
    # FedAvg and aggregation math
    ("evaluation",),                   # metrics on episodes
    ("runtime", "tff_process"),        # the two drivers of a round
    ("experiments",),                  # orchestration of runs
)
RANK = {package: rank for rank, names in enumerate(LAYERS)
        for package in names}
# The two drivers share only the runner protocol; neither imports the other.
SEPARATE = {("runtime", "tff_process"), ("tff_process", "runtime")}


def _package(module: str) -> str:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: pathlib.Path):
  tree = ast.parse(path.read_text(), filename=str(path))
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and (
        node.module == "fedmeta_tf" or node.module.startswith("fedmeta_tf.")):
      if node.module == "fedmeta_tf":
        for alias in node.names:
          yield node.lineno, f"fedmeta_tf.{alias.name}"
      else:
        yield node.lineno, node.module
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.startswith("fedmeta_tf."):
          yield node.lineno, alias.name


def _modules():
  return sorted(p for p in ROOT.rglob("*.py")
                if p.parent != ROOT or p.name != "__init__.py")


def test_every_package_has_a_layer():
  packages = {p.relative_to(ROOT).parts[0].removesuffix(".py")
              for p in _modules()}
  assert packages <= set(RANK), sorted(packages - set(RANK))


@pytest.mark.parametrize("path", _modules(),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
  own = path.relative_to(ROOT).parts[0].removesuffix(".py")
  upward = []
  for line, module in _imports(path):
    other = _package(module)
    if other not in RANK:
      continue
    if RANK[other] > RANK[own] or (own, other) in SEPARATE:
      upward.append(f"line {line}: {module} ({other} is above or beside "
                    f"{own})")
  assert not upward, "\n".join(upward)
