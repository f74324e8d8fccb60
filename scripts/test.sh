#!/usr/bin/env bash
# THE test command: install deps, build, run the whole ctest suite.
# Exits non-zero on any failure. CI runs this via .ci/run.
#   CTEST_ARGS="-R pdu" bash scripts/test.sh     # extra ctest arguments
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${ISER_SKIP_DEPS:-}" ]]; then
  echo "test: ISER_SKIP_DEPS set, not checking packages"
else
  bash scripts/install-deps.sh
fi
bash scripts/build.sh

BUILD_DIR=${BUILD_DIR:-build}
echo "test: running ctest in $BUILD_DIR"
# shellcheck disable=SC2086
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 --no-tests=error --timeout 1500 ${CTEST_ARGS:-}
