"""The binaries' quiet start-up (binaries/quiet.py) and the library's quiet
saves (fedmeta_tf/logs.py)."""

import os
import subprocess
import sys

from absl import logging
import pytest

from binaries import quiet
from fedmeta_tf import logs
from tests.binaries.train_fedmeta_test import REPO

# What TensorFlow 2.14 printed on a CPU machine while it was imported, with
# a real error and a traceback mixed in.
_CAPTURED = """\
2026-11-30 17:10:13.198408: E tensorflow/compiler/xla/stream_executor/cuda/cuda_dnn.cc:9342] Unable to register cuDNN factory: Attempting to register factory for plugin cuDNN when one has already been registered
2026-11-30 17:10:13.198454: E tensorflow/compiler/xla/stream_executor/cuda/cuda_fft.cc:609] Unable to register cuFFT factory: Attempting to register factory for plugin cuFFT when one has already been registered
2026-11-30 17:10:13.198490: E tensorflow/compiler/xla/stream_executor/cuda/cuda_blas.cc:1518] Unable to register cuBLAS factory: Attempting to register factory for plugin cuBLAS when one has already been registered
2026-11-30 17:10:14.370961: W tensorflow/compiler/tf2tensorrt/utils/py_utils.cc:38] TF-TRT Warning: Could not find TensorRT
2026-11-30 17:10:14.400000: E tensorflow/core/framework/op_kernel.cc:1000] OpKernel registration failed: something real
Traceback (most recent call last):
  File "<string>", line 1, in <module>
ImportError: libfoo.so: cannot open shared object file
"""

# Lines a plain `import tensorflow` prints on some machines and not others.
_MARKERS = ("Unable to register cuDNN factory", "TF-TRT Warning",
            "cpu_feature_guard")


def _env(**extra):
  env = {k: v for k, v in os.environ.items() if k != quiet.TF_LOG_LEVEL}
  env.update(extra)
  return env


def _python(code, env=None):
  return subprocess.run([sys.executable, "-c", code], cwd=REPO,
                        env=env or _env(), capture_output=True, text=True,
                        timeout=180, check=False)


def test_filter_drops_the_harmless_lines_only():
  kept = quiet.filter_startup_noise(_CAPTURED)
  assert kept == "".join(_CAPTURED.splitlines(keepends=True)[4:])
  for harmless in ("cuDNN", "cuFFT", "cuBLAS", "TensorRT"):
    assert harmless not in kept


def test_filter_keeps_a_harmless_text_outside_a_log_line():
  text = "ValueError: Unable to register cuDNN factory: Attempting to " \
         "register factory for plugin cuDNN when one has already been " \
         "registered\n"
  assert quiet.filter_startup_noise(text) == text


@pytest.mark.parametrize("argv,verbose", [
    ([], False),
    (["--verbosity=0"], False),
    (["--verbosity=-1"], False),
    (["--verbosity=debug"], False),  # absl's parse refuses it
    (["--verbosity=1"], True),
    (["-v", "1"], True),
    (["-v=2"], True),
    (["--v", "1"], True),
    (["-v", "1", "--verbosity=0"], False),  # the last one wins, as in absl
])
def test_verbose_requested(argv, verbose):
  assert quiet.verbose_requested(argv) is verbose


def test_verbose_requested_from_a_flagfile(tmp_path):
  flagfile = tmp_path / "f.cfg"
  flagfile.write_text("--verbosity=1\n")
  assert quiet.verbose_requested([f"--flagfile={flagfile}"])


@pytest.mark.parametrize("argv,user_level,expected", [
    ([], None, "1"),
    ([], "3", "3"),  # never overridden
    ([], "0", "0"),
    (["-v", "1"], None, None),
])
def test_log_level_environment(argv, user_level, expected):
  env = _env() if user_level is None else _env(
      **{quiet.TF_LOG_LEVEL: user_level})
  result = _python("import os; from binaries import quiet; "
                   f"quiet.quiet_start(argv={argv!r}); "
                   f"print(os.environ.get({quiet.TF_LOG_LEVEL!r}))", env=env)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == str(expected)


def test_filtered_stderr_writes_back_what_is_not_harmless():
  result = _python(
      "import os, sys\n"
      "from binaries import quiet\n"
      "with quiet.filtered_stderr():\n"
      f"  os.write(2, {_CAPTURED.encode()!r})\n"
      "  print('from python', file=sys.stderr)\n")
  assert result.returncode == 0, result.stderr
  assert "cuDNN" not in result.stderr and "TensorRT" not in result.stderr
  assert "OpKernel registration failed: something real" in result.stderr
  assert "ImportError: libfoo.so" in result.stderr
  assert result.stderr.endswith("from python\n")


def test_a_failed_import_still_shows_its_traceback():
  result = _python("from binaries import quiet\n"
                   "quiet.quiet_start('no_such_module_here', argv=[])\n")
  assert result.returncode == 1
  assert "Traceback (most recent call last)" in result.stderr
  assert "No module named 'no_such_module_here'" in result.stderr


def test_logs_quiet_hides_info_unless_debug():
  before = logging.get_verbosity()
  try:
    logging.set_verbosity(logging.INFO)
    with logs.quiet():
      assert logging.get_verbosity() == logging.WARNING
    assert logging.get_verbosity() == logging.INFO
    logging.set_verbosity(logging.DEBUG)
    with logs.quiet():
      assert logging.get_verbosity() == logging.DEBUG
  finally:
    logging.set_verbosity(before)


def _binary_stderr(*args):
  result = subprocess.run(
      [sys.executable, "-m", "binaries.train_fedmeta", "--helpshort", *args],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=180,
      check=False)
  assert "Traceback" not in result.stderr, result.stderr
  return result.stderr


def test_binary_start_up_is_quiet_unless_verbose():
  printed = _python("import tensorflow").stderr
  assert not any(m in _binary_stderr() for m in _MARKERS)
  markers = [m for m in _MARKERS if m in printed]
  if not markers:
    pytest.skip("this TensorFlow build prints none of the start-up lines")
  verbose = _binary_stderr("--verbosity=1")
  assert all(m in verbose for m in markers), verbose
