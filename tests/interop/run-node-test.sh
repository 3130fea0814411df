#!/usr/bin/env bash
# Runs one node test file for ctest: node --test FILE, after checking that
# what it needs is installed (.ci/install-node-deps --check). Installing is
# the set-up step's job (bash .ci/install-deps), never the test run's, so a
# missing dependency fails the test with a message saying what to run.
#
# Usage: run-node-test.sh [--no-chromium] FILE
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
check=(--check)
if [ "${1:-}" = --no-chromium ]; then
  check+=(--no-chromium)
  shift
fi
bash "$root/.ci/install-node-deps" "${check[@]}"
exec node --test "$@"
