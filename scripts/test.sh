#!/usr/bin/env bash
# Creates the environment if needed (scripts/bootstrap.sh), then runs the
# whole test suite.
#
# Without arguments the suite runs one pytest process per test package
# (tests/<package>/, then the top-level test modules), one after another:
# each starts with a fresh TensorFlow runtime, so traced functions, Keras
# state, gRPC channels and open files of one package never pile up in the
# next, and a package that hangs is stopped after GROUP_TIMEOUT seconds
# (default 3000; tests/binaries takes 23 min on the idle 2-core machine,
# 38 min beside two other jobs)
# while the others still run. The exit status is non-zero if
# any package failed. With arguments, one pytest run gets them all
# (e.g. `bash scripts/test.sh tests/attacks -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
PYTEST=(.venv/bin/python -m pytest -q -p no:cacheprovider)
if [ "$#" -gt 0 ]; then
  exec "${PYTEST[@]}" "$@"
fi

groups=()
for dir in tests/*/; do
  # Packages with test modules (a package of fixtures alone would fail).
  if [ -n "$(find "${dir}" -name '*_test.py' -print -quit)" ]; then
    groups+=("${dir%/}")
  fi
done
groups+=("$(ls tests/*_test.py | tr '\n' ' ')")

failed=()
start=$SECONDS
for group in "${groups[@]}"; do
  echo "=== ${group} ($((SECONDS - start)) s)"
  # shellcheck disable=SC2086  # the last group is several files
  if ! timeout --kill-after=30 "${GROUP_TIMEOUT:-3000}" "${PYTEST[@]}" $group; then
    failed+=("${group}")
  fi
done
echo "=== $(( ${#groups[@]} - ${#failed[@]} )) of ${#groups[@]} test groups passed in $((SECONDS - start)) s"
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
