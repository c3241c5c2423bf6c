#!/usr/bin/env bash
# Creates .venv with the pinned stack (BUILD.md explains the pins) and
# installs fedmeta_tf into it in editable mode. Idempotent: a complete
# environment is reused (a stamp records the lock files' hash).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FEDMETA_VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  echo "bootstrap: need Python 3.11 (TensorFlow 2.14 / TFF 0.87); $PY is $("$PY" --version 2>&1). Set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
stamp="$VENV/.fedmeta-stamp"
want=$(cat requirements/lock.txt requirements/tff-nodeps.txt setup.py | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "bootstrap: creating $VENV with $($PY --version)" >&2
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# 1. The stack, pinned and complete (requirements/lock.txt is the verified
#    freeze; --no-deps because the set's own metadata conflicts, e.g.
#    tensorflow-privacy asks for packaging~=22.0, the set runs with 26.3).
"$VENV/bin/python" -m pip install -q --no-deps -r requirements/lock.txt
# 2. TFF 0.87.0 pins jaxlib==0.4.14, which the index no longer serves: install
#    it without dependencies; lock.txt already carries its requirements.
"$VENV/bin/python" -m pip install -q --no-deps -r requirements/tff-nodeps.txt
# 3. The project itself.
"$VENV/bin/python" -m pip install -q --no-deps -e .
echo "$want" > "$stamp"
