#!/usr/bin/env bash
# Initiator speed in one run, against one iser-target LUN (a filled file in tmpfs):
#   1. library level: our initiator (initiator-bench: LunHandle, QD32) vs libiscsi's
#      iscsi-perf (same LUN, same queue depth): 4 KiB random read IOPS and 128 KiB
#      sequential read MB/s, with ratios.
#   2. block device: fio (libaio, direct, QD32) through iser-attach's /dev/loopN vs fio on
#      the LUN's backing file directly: 4 KiB randread/randwrite IOPS, 128 KiB
#      read/write MB/s, with ratios; and, when nbdkit and nbdfuse are installed, the
#      reference loop device over a FUSE file served by nbdfuse -> nbdkit (memory).
# Not a ctest (timings). Compare only numbers from the same run.
#
#   bench_initiator.sh [--build DIR] [--seconds S] [--size-mib N] [--transport tcp|iser|auto]
#                      [--rounds N]
# --rounds N repeats the block-device table N times, alternating which device goes first,
# and prints per-column medians and the median of the per-round ratios (load from other
# work on this machine moves single runs by 2x).
# --transport (default tcp) is what initiator-bench and iser-attach use; iscsi-perf and
# the reference are TCP/Unix-socket only, so tcp compares like with like.
# Needs root, fio, iscsi-perf (libiscsi-bin).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../../scripts/lib/iscsi-peers.sh
source "$ROOT/scripts/lib/iscsi-peers.sh"
BUILD=$ROOT/build-attach SECS=5 SIZE_MIB=1024 TRANSPORT=tcp ROUNDS=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --size-mib) SIZE_MIB=$2; shift ;;
    --transport) TRANSPORT=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
# Absolute: the script works in a temp directory.
BUILD=$(cd "$BUILD" && pwd) || { echo "no build directory $BUILD" >&2; exit 1; }
TARGET_BIN=$BUILD/iser/target/iser-target
ATTACH=$BUILD/node/attach/iser-attach
IBENCH=$BUILD/node/attach/initiator-bench
for b in "$TARGET_BIN" "$ATTACH" "$IBENCH"; do
  [[ -x $b ]] || { echo "missing $b (build iser-target iser-attach initiator-bench)" >&2; exit 1; }
done
for t in fio iscsi-perf; do
  command -v $t >/dev/null || { echo "$t not found (scripts/install-deps.sh)" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "needs root" >&2; exit 1; }

WORK=$(mktemp -d /tmp/iser-bench-init.XXXXXX)
SHM=$(mktemp -d /dev/shm/iser-bench-init.XXXXXX)
STATE=$WORK/state
DEV= NBDKIT_PID= NBDFUSE_PID= NBD_LOOP=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [[ -n $NBD_LOOP ]] && losetup -d "$NBD_LOOP"
  if [[ -n $NBDFUSE_PID ]]; then
    for _ in 1 2 3 4 5 6 7 8 9 10; do fusermount3 -u "$WORK/nbdfuse" 2>/dev/null && break; sleep 0.3; done
    wait "$NBDFUSE_PID"
  fi
  [[ -n $NBDKIT_PID ]] && { kill "$NBDKIT_PID"; wait "$NBDKIT_PID"; }
  [[ -n $DEV ]] && "$ATTACH" --state-dir "$STATE" --detach "$DEV"
  [[ -n $ISER_TARGET_PID ]] && iser_target_stop
  rm -rf "$WORK" "$SHM"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$WORK"

IQN=iqn.2026-11.org.iser-csi:bench
LUNFILE=$SHM/lun.img
PORT=$(free_port)
echo "filling a ${SIZE_MIB} MiB LUN file in tmpfs"
dd if=/dev/urandom of="$LUNFILE" bs=1M count="$SIZE_MIB" status=none
iser_target_start "$TARGET_BIN" "$WORK" "$PORT" "$IQN" "$LUNFILE" "${SIZE_MIB}M" --log-level warning
URL=iscsi://127.0.0.1:$PORT/$IQN/0

perf_iops() {   # iscsi-perf args -> "IOPS MBps"
  iscsi-perf -t "$SECS" "$@" "$URL" 2>&1 | tr '\r' '\n' |
    grep -o 'iops average [0-9]* ([0-9.]* MB/s)' | tail -1 |
    sed 's/iops average \([0-9]*\) (\([0-9.]*\) MB\/s)/\1 \2/'
}
ours() {   # initiator-bench args -> "IOPS MBps"
  "$IBENCH" --portal "127.0.0.1:$PORT" --target "$IQN" --lun 0 --qd 32 --seconds "$SECS" \
    --transport "$TRANSPORT" "$@" | grep ' IOPS ' | head -1 |
    sed 's/.*: \([0-9]*\) IOPS \([0-9.]*\) MB\/s.*/\1 \2/'
}
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }

echo
echo "== 1. library level, QD32, same target and LUN"
read -r lp_iops _ <<<"$(perf_iops -b 8 -r -m 32)"
read -r our_iops _ <<<"$(ours --rw randread --bs 4096)"
read -r _ lp_mbs <<<"$(perf_iops -b 256 -m 32)"
read -r _ our_mbs <<<"$(ours --rw read --bs 131072)"
printf '%-34s %12s %12s %8s\n' "" "initiator" "iscsi-perf" "ratio"
printf '%-34s %12s %12s %8s\n' "4 KiB random read IOPS" "$our_iops" "$lp_iops" "$(ratio "$our_iops" "$lp_iops")"
printf '%-34s %12s %12s %8s\n' "128 KiB sequential read MB/s" "$our_mbs" "$lp_mbs" "$(ratio "$our_mbs" "$lp_mbs")"

echo
echo "== 2. fio QD32 through iser-attach (/dev/loopN) vs fio on the backing file"
DEV=$("$ATTACH" --state-dir "$STATE" --log-file "$WORK/attach.log" --portal "127.0.0.1:$PORT" \
  --target "$IQN" --lun 0 --transport "$TRANSPORT" | tail -1)
echo "attached as $DEV ($(grep -o 'over [^ ]*' "$WORK/attach.log" | tail -1 || true))"
fio_one() {   # file rw bs -> IOPS or MB/s (by bs)
  local out
  out=$(fio --name=b --filename="$1" --rw="$2" --bs="$3" --iodepth=32 --ioengine=libaio \
    --direct="$4" --time_based --runtime="$SECS" --size="${SIZE_MIB}M" --output-format=json 2>/dev/null)
  python3 -c '
import json,sys
j=json.loads(sys.stdin.read())["jobs"][0]
d=j["read"] if j["read"]["io_bytes"] else j["write"]
print(int(d["iops"]) if sys.argv[1]=="4k" else round(d["bw_bytes"]/1e6,1))' "$3" <<<"$out"
}
NBD=0
if command -v nbdkit >/dev/null && command -v nbdfuse >/dev/null; then
  nbdkit -f --unix "$WORK/nbd.sock" memory "${SIZE_MIB}M" &
  NBDKIT_PID=$!
  for _ in $(seq 50); do [[ -S $WORK/nbd.sock ]] && break; sleep 0.1; done
  mkdir -p "$WORK/nbdfuse"
  nbdfuse "$WORK/nbdfuse/disk" --unix "$WORK/nbd.sock" &
  NBDFUSE_PID=$!
  for _ in $(seq 50); do [[ -f $WORK/nbdfuse/disk ]] && break; sleep 0.1; done
  NBD_LOOP=$(losetup --direct-io=on -f --show "$WORK/nbdfuse/disk")
  dd if=/dev/urandom of="$NBD_LOOP" bs=1M count="$SIZE_MIB" oflag=direct status=none
  NBD=1
  echo "reference: $NBD_LOOP = loop over nbdfuse -> nbdkit memory"
else
  echo "(nbdkit/nbdfuse not installed: no reference column; apt-get install nbdkit nbdfuse)"
fi
SPECS=("randread 4k 4 KiB random read IOPS" "randwrite 4k 4 KiB random write IOPS"
  "read 128k 128 KiB read MB/s" "write 128k 128 KiB write MB/s")
ROWS=$WORK/rows   # round label device file nbdfuse
: >"$ROWS"
for ((round = 1; round <= ROUNDS; round++)); do
  [[ $ROUNDS -gt 1 ]] && echo "-- round $round of $ROUNDS"
  printf '%-34s %10s %10s %10s %10s %10s\n' "" "device" "file" "dev/file" "nbdfuse" "dev/nbdfuse"
  for spec in "${SPECS[@]}"; do
    read -r rw bs label <<<"$spec"
    n=- rn=-
    # Even rounds measure the reference first, so that a load change during a row does
    # not always favour the same side.
    if [[ $NBD == 1 && $((round % 2)) == 0 ]]; then n=$(fio_one "$NBD_LOOP" "$rw" "$bs" 1); fi
    d=$(fio_one "$DEV" "$rw" "$bs" 1)
    # tmpfs refuses O_DIRECT: the backing file is read through the page cache (it lives there).
    f=$(fio_one "$LUNFILE" "$rw" "$bs" 0)
    if [[ $NBD == 1 && $((round % 2)) == 1 ]]; then n=$(fio_one "$NBD_LOOP" "$rw" "$bs" 1); fi
    [[ $NBD == 1 ]] && rn=$(ratio "$d" "$n")
    printf '%-34s %10s %10s %10s %10s %10s\n' "$label" "$d" "$f" "$(ratio "$d" "$f")" "$n" "$rn"
    echo "$round|$label|$d|$f|$n" >>"$ROWS"
  done
done
if [[ $ROUNDS -gt 1 ]]; then
  echo
  echo "== medians over $ROUNDS rounds (ratios: median of the per-round ratios)"
  python3 - "$ROWS" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    _, label, d, f, n = line.rstrip("\n").split("|")
    rows.setdefault(label, []).append((float(d), float(f), None if n == "-" else float(n)))
fmt = "%-34s %10s %10s %10s %10s %10s"
print(fmt % ("", "device", "file", "dev/file", "nbdfuse", "dev/nbdfuse"))
med = lambda xs: statistics.median(xs)
for label, rs in rows.items():
    d, f = med([r[0] for r in rs]), med([r[1] for r in rs])
    df = med([r[0] / r[1] for r in rs])
    if rs[0][2] is None:
        n = rn = "-"
    else:
        n, rn = "%g" % med([r[2] for r in rs]), "%.2f" % med([r[0] / r[2] for r in rs])
    print(fmt % (label, "%g" % d, "%g" % f, "%.2f" % df, n, rn))
PY
fi
"$ATTACH" --state-dir "$STATE" --detach "$DEV"
DEV=
