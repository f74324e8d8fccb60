#!/usr/bin/env bash
# Configure (clang, Ninja, RelWithDebInfo) into ./build and build everything.
#   BUILD_DIR=... BUILD_TYPE=... bash scripts/build.sh [extra cmake -D args]
#   ISER_BUILD_TARGETS="iser-target" bash scripts/build.sh   # build only these targets
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}

echo "build: configuring $BUILD_DIR ($BUILD_TYPE, clang, Ninja)"
cmake -S . -B "$BUILD_DIR" -G Ninja \
  -DCMAKE_BUILD_TYPE="$BUILD_TYPE" \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  "$@"
if [[ -n "${ISER_BUILD_TARGETS:-}" ]]; then
  echo "build: building ${ISER_BUILD_TARGETS} with -j$(nproc)"
  # shellcheck disable=SC2086
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target ${ISER_BUILD_TARGETS}
else
  echo "build: building everything with -j$(nproc)"
  cmake --build "$BUILD_DIR" -j"$(nproc)"
fi
