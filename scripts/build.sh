#!/usr/bin/env bash
# Configure (clang, Ninja, RelWithDebInfo) into ./build and build everything.
#   BUILD_DIR=... BUILD_TYPE=... bash scripts/build.sh [extra cmake -D args]
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}

echo "build: configuring $BUILD_DIR ($BUILD_TYPE, clang, Ninja)"
cmake -S . -B "$BUILD_DIR" -G Ninja \
  -DCMAKE_BUILD_TYPE="$BUILD_TYPE" \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  "$@"
echo "build: building with -j$(nproc)"
cmake --build "$BUILD_DIR" -j"$(nproc)"
