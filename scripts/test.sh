#!/usr/bin/env bash
# Creates the environment if needed (scripts/bootstrap.sh), then runs the
# whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
