#!/usr/bin/env bash
# Throughput/IOPS of iser-target vs tgt, measured with libiscsi's iscsi-perf in one run,
# against one fully written 1 GiB file, with loopback TCP (iperf3) as the ceiling.
# Compare only numbers from the same run: absolute speeds vary 2x between machines/loads.
#
#   bench_target.sh [--target BIN] [--rounds N] [--seconds S] [--size SIZE] [--dir DIR]
#     --target BIN   iser-target binary; without it (or if missing) only tgt is measured
#     --rounds N     alternating rounds, default 3 (median per peer and workload)
#     --seconds S    iscsi-perf time per measurement, default 6
#     --size SIZE    backing file size, default 1G (written fully with dd)
#     --dir DIR      where to put the backing file (default a temp dir; removed at exit)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../scripts/lib/iscsi-peers.sh
source "$HERE/../../scripts/lib/iscsi-peers.sh"

BIN='' ROUNDS=3 SECS=6 SIZE=1G DIR_ARG=''
while [[ $# -gt 0 ]]; do
  case $1 in
    --target) BIN=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --dir) DIR_ARG=$2; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
for tool in iscsi-perf tgtd iperf3 python3 dd; do
  command -v "$tool" >/dev/null || { echo "$tool not found (bash scripts/install-deps.sh)" >&2; exit 1; }
done

PEERS=(tgt)
if [[ -z "$BIN" ]]; then
  log "no --target given: measuring tgt only"
elif [[ ! -x "$BIN" ]]; then
  log "iser-target binary $BIN not found: measuring tgt only"
  BIN=
else
  BIN=$(realpath "$BIN")
  PEERS=(iser-target tgt)
fi

WORK=$(mktemp -d "${DIR_ARG:-${TMPDIR:-/tmp}}/iser-bench.XXXXXX")
IPERF_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [[ -n "$IPERF_PID" ]]; then kill "$IPERF_PID" 2>/dev/null; wait "$IPERF_PID" 2>/dev/null; fi
  if [[ -n "$ISER_TARGET_PID" ]]; then iser_target_stop || true; fi
  tgt_stop
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

FILE=$WORK/lun.img
bytes=$(numfmt --from=iec "$SIZE")
log "writing $SIZE backing file $FILE"
dd if=/dev/zero of="$FILE" bs=1M count=$((bytes / 1048576)) conv=fsync status=none

# --- loopback ceiling ------------------------------------------------------------
IPORT=$(free_port)
# -1: serve one test then exit. Do not probe the port: a probe would be that one client.
iperf3 -s -1 -p "$IPORT" -B 127.0.0.1 >"$WORK/iperf3.log" 2>&1 &
IPERF_PID=$!
for ((i = 0; i < 100; i++)); do
  grep -qs 'Server listening' "$WORK/iperf3.log" && break
  sleep 0.1
done
log "iperf3 loopback, one stream, 5 s"
CEIL_MBS=$(iperf3 -c 127.0.0.1 -p "$IPORT" -t 5 -J | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(round(d["end"]["sum_received"]["bits_per_second"] / 8 / 1e6))')
wait "$IPERF_PID" 2>/dev/null || true
IPERF_PID=
log "loopback ceiling: $CEIL_MBS MB/s"

# --- targets ----------------------------------------------------------------------
TGT_PORT=$(free_port)
tgt_start "$WORK" "$TGT_PORT" iqn.2026-11.org.iser-csi:bench-tgt "$FILE"
declare -A URL
URL[tgt]=iscsi://127.0.0.1:$TGT_PORT/iqn.2026-11.org.iser-csi:bench-tgt/1
log "tgt on 127.0.0.1:$TGT_PORT (LUN 1)"
if [[ -n "$BIN" ]]; then
  ISER_PORT=$(free_port)
  iser_target_start "$BIN" "$WORK" "$ISER_PORT" iqn.2026-11.org.iser-csi:bench "$FILE" "$SIZE"
  URL[iser-target]=iscsi://127.0.0.1:$ISER_PORT/iqn.2026-11.org.iser-csi:bench/0
  log "iser-target on 127.0.0.1:$ISER_PORT (LUN 0, same file)"
fi

WORKLOADS=(seq128k rand4k_qd32 rand4k_qd1)
declare -A ARGS=([seq128k]="-b 256 -m 32" [rand4k_qd32]="-b 8 -r -m 32" [rand4k_qd1]="-b 8 -r -m 1")
declare -A LABEL=([seq128k]="128 KiB seq read QD32" [rand4k_qd32]="4 KiB rand read QD32"
                  [rand4k_qd1]="4 KiB rand read QD1")
RESULTS=$WORK/results.txt   # peer workload round iops mbs
: >"$RESULTS"

measure() {   # peer workload round
  local out line
  # shellcheck disable=SC2086
  out=$(iscsi-perf -t "$SECS" ${ARGS[$2]} "${URL[$1]}" 2>&1 | tr '\r' '\n') || true
  line=$(grep -o 'iops average [0-9]* ([0-9.]* [KMG]*B/s)' <<<"$out" | tail -1 || true)
  if [[ -z "$line" ]]; then
    echo "iscsi-perf against $1 gave no result:" >&2
    tail -5 <<<"$out" >&2
    return 1
  fi
  python3 - "$1" "$2" "$3" "$line" >>"$RESULTS" <<'PY'
import re, sys
peer, wl, rnd, line = sys.argv[1:]
m = re.search(r"iops average (\d+) \(([\d.]+) ([KMG]?)B/s\)", line)
mbs = float(m.group(2)) * {"K": 1e-3, "": 1e-6, "M": 1, "G": 1e3}[m.group(3)]
print(peer, wl, rnd, m.group(1), round(mbs, 1))
PY
  log "round $3  $(printf '%-12s %-24s' "$1" "${LABEL[$2]}") $line"
}

for ((r = 1; r <= ROUNDS; r++)); do
  order=("${PEERS[@]}")
  if ((r % 2 == 0)) && ((${#PEERS[@]} == 2)); then order=("${PEERS[1]}" "${PEERS[0]}"); fi
  for wl in "${WORKLOADS[@]}"; do
    for peer in "${order[@]}"; do
      measure "$peer" "$wl" "$r"
    done
  done
done

python3 - "$RESULTS" "$CEIL_MBS" "$ROUNDS" "$SECS" <<'PY'
import statistics, sys
path, ceil, rounds, secs = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = [l.split() for l in open(path)]
wls = [("seq128k", "128 KiB seq read QD32"), ("rand4k_qd32", "4 KiB rand read QD32"),
       ("rand4k_qd1", "4 KiB rand read QD1")]
peers = [p for p in ("iser-target", "tgt") if any(r[0] == p for r in rows)]
def med(peer, wl, col):
    v = [float(r[col]) for r in rows if r[0] == peer and r[1] == wl]
    return statistics.median(v) if v else None
print()
print(f"iscsi-perf medians over {rounds} alternating rounds of {secs} s; "
      f"loopback TCP ceiling (iperf3, 1 stream) {ceil:.0f} MB/s")
hdr = f"{'workload':<24}"
for p in peers:
    hdr += f" {p + ' IOPS':>17} {p + ' MB/s':>17} {'%ceil':>6}"
if len(peers) == 2:
    hdr += f" {'iser-target/tgt':>16}"
print(hdr)
print("-" * len(hdr))
for wl, label in wls:
    line = f"{label:<24}"
    for p in peers:
        iops, mbs = med(p, wl, 3), med(p, wl, 4)
        line += f" {iops:>17.0f} {mbs:>17.1f} {100 * mbs / ceil:>5.1f}%"
    if len(peers) == 2:
        a, b = med("iser-target", wl, 3), med("tgt", wl, 3)
        line += f" {a / b:>16.2f}" if b else f" {'n/a':>16}"
    print(line)
if len(peers) == 1:
    print("(iser-target not measured: pass --target build/iser/target/iser-target)")
PY
