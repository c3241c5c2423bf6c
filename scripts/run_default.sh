#!/usr/bin/env bash
# Creates the environment if needed, then runs the main job on the embedded
# glyphs dataset (configs/glyphs.cfg). Extra arguments are flags.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m binaries.train_fedmeta --flagfile=configs/glyphs.cfg "$@"
