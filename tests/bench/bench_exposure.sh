#!/usr/bin/env bash
# Block-device exposure speed in one run: fio (libaio, direct, QD32) through
#   fuse_loop  - our fuse_loop device over an in-memory LUN (node/tools/expose-memory)
#   nbdfuse    - the reference: loop over a FUSE file served by nbdfuse -> nbdkit memory
#   loop-file  - loop device over a plain file in tmpfs (the loop driver's own ceiling)
#   file       - fio on that plain tmpfs file directly (the ceiling of this machine)
# and ratios for 4 KiB randread/randwrite IOPS and 128 KiB read/write MB/s.
# Every target is fully written first. Compare only numbers from the same run.
#
#   bench_exposure.sh [--bin EXPOSE_MEMORY] [--seconds S] [--size-mib N] [--threads N]
#     --bin        expose-memory binary (default: build-node/node/tools/expose-memory)
#     --seconds S  fio time per measurement, default 8
#     --size-mib N device size, default 1024
#     --threads N  fuse_loop FUSE worker threads, default 16
# Needs root (FUSE mounts, loop devices). Installs nbdkit and nbdfuse if missing.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

BIN="$ROOT/build-node/node/tools/expose-memory" SECS=8 SIZE_MIB=1024 THREADS=16
while [[ $# -gt 0 ]]; do
  case $1 in
    --bin) BIN=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --size-mib) SIZE_MIB=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
log() { echo "bench_exposure: $*" >&2; }
[[ $(id -u) -eq 0 ]] || { log "needs root"; exit 1; }
[[ -x "$BIN" ]] || { log "expose-memory not found at $BIN (build target expose-memory)"; exit 1; }
for tool in fio python3 losetup; do
  command -v "$tool" >/dev/null || { log "$tool not found (bash scripts/install-deps.sh)"; exit 1; }
done
if ! command -v nbdkit >/dev/null || ! command -v nbdfuse >/dev/null; then
  log "installing nbdkit nbdfuse"
  DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends nbdkit nbdfuse \
    >/dev/null || { apt-get -q update >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends nbdkit nbdfuse \
      >/dev/null; }
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/iser-bench-exposure.XXXXXX")
SHM=$(mktemp -d /dev/shm/iser-bench-exposure.XXXXXX)
EXPOSE_PID='' NBDKIT_PID='' NBD_LOOP='' FILE_LOOP='' NBDFUSE_MNT=''
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [[ -n "$EXPOSE_PID" ]] && { kill -TERM "$EXPOSE_PID"; wait "$EXPOSE_PID"; }
  [[ -n "$NBD_LOOP" ]] && losetup -d "$NBD_LOOP"
  [[ -n "$FILE_LOOP" ]] && losetup -d "$FILE_LOOP"
  if [[ -n "$NBDFUSE_MNT" ]]; then
    for _ in 1 2 3 4 5 6 7 8 9 10; do fusermount3 -u "$NBDFUSE_MNT" 2>/dev/null && break; sleep 0.3; done
  fi
  [[ -n "$NBDKIT_PID" ]] && { kill "$NBDKIT_PID"; wait "$NBDKIT_PID"; }
  rm -rf "$WORK" "$SHM"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for() {  # wait_for CMD...: up to 10 s
  for _ in $(seq 100); do "$@" && return 0; sleep 0.1; done
  return 1
}

# --- targets ------------------------------------------------------------------------------
log "starting fuse_loop (expose-memory, ${SIZE_MIB} MiB, block 4096, $THREADS threads)"
"$BIN" --size-mib "$SIZE_MIB" --block-size 4096 --threads "$THREADS" >"$WORK/expose.out" \
  2>"$WORK/expose.err" &
EXPOSE_PID=$!
wait_for grep -q '^/dev/' "$WORK/expose.out" || { cat "$WORK/expose.err" >&2; exit 1; }
OUR_DEV=$(tail -1 "$WORK/expose.out")

log "starting nbdkit memory + nbdfuse + loop"
nbdkit -f --unix "$WORK/nbd.sock" memory "${SIZE_MIB}M" &
NBDKIT_PID=$!
wait_for test -S "$WORK/nbd.sock"
mkdir -p "$WORK/nbdfuse"
nbdfuse "$WORK/nbdfuse/disk" --unix "$WORK/nbd.sock" &
NBDFUSE_MNT="$WORK/nbdfuse"
wait_for test -f "$WORK/nbdfuse/disk"
NBD_LOOP=$(losetup --direct-io=on --sector-size 4096 -f --show "$WORK/nbdfuse/disk")

log "creating the plain file in tmpfs and its loop device"
truncate -s "${SIZE_MIB}M" "$SHM/plain"
FILE_LOOP=$(losetup --direct-io=on --sector-size 4096 -f --show "$SHM/plain")

declare -A PATHS=([fuse_loop]=$OUR_DEV [nbdfuse]=$NBD_LOOP [loop-file]=$FILE_LOOP [file]=$SHM/plain)
TARGETS=(fuse_loop nbdfuse loop-file file)
for t in "${TARGETS[@]}"; do
  log "  $t: ${PATHS[$t]} (dio $(cat /sys/block/"$(basename "${PATHS[$t]}")"/loop/dio 2>/dev/null || echo n/a))"
done

# --- measure ------------------------------------------------------------------------------
fio_run() {  # fio_run PATH RW BS SECONDS -> "iops bw_bytes_per_s"
  fio --name=b --filename="$1" --ioengine=libaio --direct=1 --iodepth=32 --rw="$2" --bs="$3" \
    --size="${SIZE_MIB}M" --runtime="$4" --time_based --group_reporting \
    --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]
r=j["read"] if j["read"]["io_bytes"] else j["write"]
print(int(r["iops"]), int(r["bw_bytes"]))'
}
for t in "${TARGETS[@]}"; do
  log "prefilling $t"
  fio --name=fill --filename="${PATHS[$t]}" --ioengine=libaio --direct=1 --iodepth=32 --rw=write \
    --bs=1M --size="${SIZE_MIB}M" >/dev/null
done

WORKLOADS=("randread 4k" "randwrite 4k" "read 128k" "write 128k")
declare -A RES
for w in "${WORKLOADS[@]}"; do
  read -r rw bs <<<"$w"
  for t in "${TARGETS[@]}"; do
    RES[$t,$rw]=$(fio_run "${PATHS[$t]}" "$rw" "$bs" "$SECS")
    log "$t $rw $bs: ${RES[$t,$rw]}"
  done
done

# --- report -------------------------------------------------------------------------------
echo
printf '%-22s' "fio QD32 direct"
for t in "${TARGETS[@]}"; do printf '%14s' "$t"; done
printf '%14s%14s\n' "ours/nbdfuse" "ours/file"
for w in "${WORKLOADS[@]}"; do
  read -r rw bs <<<"$w"
  if [[ $bs == 4k ]]; then label="$rw $bs IOPS"; else label="$rw $bs MB/s"; fi
  printf '%-22s' "$label"
  declare -A V=()
  for t in "${TARGETS[@]}"; do
    read -r iops bw <<<"${RES[$t,$rw]}"
    if [[ $bs == 4k ]]; then V[$t]=$iops; else V[$t]=$((bw / 1000000)); fi
    printf '%14s' "${V[$t]}"
  done
  python3 -c "import sys; o,n,f=map(float,sys.argv[1:]); print('%14.2f%14.2f' % (o/max(n,1), o/max(f,1)))" \
    "${V[fuse_loop]}" "${V[nbdfuse]}" "${V[file]}"
done
