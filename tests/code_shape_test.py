"""Code shape limits: small modules, and short functions or a reason why not.

Every module under fedmeta_tf/, binaries/ and benchmarks/ has at most
`MAX_MODULE_LINES` lines; every function longer than `MAX_FUNCTION_LINES`
says why it cannot be split in a comment starting with `# Long:` among the
first lines of its body (after the docstring).
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("fedmeta_tf", "binaries", "benchmarks")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MARKER = "# Long:"
_MARKER_WINDOW = 5  # Lines after the docstring that may hold the marker.


def _modules() -> list[pathlib.Path]:
  return sorted(p for package in PACKAGES
                for p in (ROOT / package).rglob("*.py"))


def _unexplained_long_functions(source: str) -> list[str]:
  """`name:line (length)` of each long function without a `# Long:` comment."""
  lines = source.splitlines()
  found = []
  for node in ast.walk(ast.parse(source)):
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      continue
    length = node.end_lineno - node.lineno + 1
    if length <= MAX_FUNCTION_LINES:
      continue
    first = node.body[0]
    is_docstring = (isinstance(first, ast.Expr) and
                    isinstance(first.value, ast.Constant) and
                    isinstance(first.value.value, str))
    # From the line after the docstring (or the `def` line) on; 0-based.
    start = first.end_lineno if is_docstring else node.lineno
    stop = (first.end_lineno if is_docstring else first.lineno - 1)
    window = lines[start:stop + _MARKER_WINDOW]
    if not any(line.strip().startswith(MARKER) for line in window):
      found.append(f"{node.name}:{node.lineno} ({length} lines)")
  return found


def test_modules_are_small():
  too_long = {}
  for path in _modules():
    count = len(path.read_text().splitlines())
    if count > MAX_MODULE_LINES:
      too_long[str(path.relative_to(ROOT))] = count
  assert not too_long, (
      f"modules over {MAX_MODULE_LINES} lines (split them): {too_long}")


def test_long_functions_say_why():
  unexplained = {}
  for path in _modules():
    found = _unexplained_long_functions(path.read_text())
    if found:
      unexplained[str(path.relative_to(ROOT))] = found
  assert not unexplained, (
      f"functions over {MAX_FUNCTION_LINES} lines without a '{MARKER}' "
      f"comment saying why they cannot be split: {unexplained}")


@pytest.mark.parametrize("body, flagged", [
    ("  x = 1\n" * 70, True),
    ('  """Doc."""\n  # Long: one closure.\n' + "  x = 1\n" * 70, False),
    ("  # Long: one closure.\n" + "  x = 1\n" * 70, False),
    ('  """Doc."""\n' + "  x = 1\n" * 10 + "  # Long: late.\n" +
     "  x = 1\n" * 60, True),
    ("  x = 1\n" * 59, False),
])
def test_checker(body, flagged):
  found = _unexplained_long_functions("def f():\n" + body)
  assert bool(found) == flagged, found
