#!/usr/bin/env bash
# Benchmarks: iser-target vs tgt with iscsi-perf, loopback iperf3 as the ceiling.
#   bash scripts/bench.sh [bench_target.sh options, e.g. --rounds 5 --seconds 10]
# Takes ~2.5 min with the defaults (3 rounds x 3 workloads x 2 peers x 6 s + setup).
#   bash scripts/bench.sh --eval [bench_iser_eval.sh options, e.g. --seconds 5]
# The evaluation benchmark instead: iSER (software iWARP) vs iSCSI/TCP, one table, ~3 min.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
BIN=$(pwd)/$BUILD_DIR/iser/target/iser-target
EVAL=0
if [[ ${1:-} == --eval ]]; then EVAL=1; shift; fi

if [[ -n "${ISER_SKIP_DEPS:-}" ]]; then
  echo "bench: ISER_SKIP_DEPS set, not checking packages"
else
  bash scripts/install-deps.sh
fi
if [[ $EVAL == 1 ]]; then
  ISER_BUILD_TARGETS="iser-target initiator-bench" bash scripts/build.sh
  exec bash tests/bench/bench_iser_eval.sh --build "$(pwd)/$BUILD_DIR" "$@"
fi
if ! ISER_BUILD_TARGETS=iser-target bash scripts/build.sh; then
  echo "bench: building iser-target failed; measuring tgt only"
fi
if [[ ! -x "$BIN" ]]; then
  echo "bench: $BIN does not exist (iser-target not in this tree yet); measuring tgt only"
fi
exec bash tests/bench/bench_target.sh --target "$BIN" "$@"
