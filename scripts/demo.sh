#!/usr/bin/env bash
# THE demo: the whole data path on one machine. Build iser-target and iser-attach, serve a
# sparse LUN on 127.0.0.1 (iSCSI/TCP and iSER over software iWARP on one port), attach it
# with the built-in initiator as a block device (FUSE file + loop device; transport auto:
# iSER, falling back to TCP), make an ext4 filesystem, mount it, write and verify a file,
# run a short fio job, unmount and detach; then the same fio job on the raw device over
# iSER and over TCP side by side; stop. Leaves nothing behind.
#
#   bash scripts/demo.sh                 # as root on Debian 12 (installs deps on first run)
#   bash scripts/demo.sh --against-tgt   # same steps against tgt (checks the demo itself)
# Environment: ISER_DEMO_PORT (default 3260, or a free port if 3260 is busy),
#   ISER_DEMO_SIZE (default 1G), ISER_DEMO_DIR (data dir; default a fresh temp dir,
#   removed at exit), ISER_SKIP_DEPS=1, BUILD_DIR (default build).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=lib/iscsi-peers.sh
source scripts/lib/iscsi-peers.sh

AGAINST_TGT=0
[[ "${1:-}" == "--against-tgt" ]] && AGAINST_TGT=1
BUILD_DIR=${BUILD_DIR:-build}
SIZE=${ISER_DEMO_SIZE:-1G}
IQN=iqn.2026-11.org.iser-csi:demo
BIN=$ROOT/$BUILD_DIR/iser/target/iser-target
ATTACH=$ROOT/$BUILD_DIR/node/attach/iser-attach

if [[ -t 1 ]]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
run() { printf '$ %s\n' "$*" >&2; "$@"; }

if [[ $(id -u) -ne 0 ]]; then
  echo "demo.sh needs root (FUSE mount, loop devices, mount)" >&2
  exit 1
fi

step "1. dependencies"
if [[ -n "${ISER_SKIP_DEPS:-}" ]]; then
  echo "ISER_SKIP_DEPS set: not checking packages"
else
  bash scripts/install-deps.sh
fi

if [[ $AGAINST_TGT == 1 ]]; then
  PEER=tgt LUN=1
  TARGETS=iser-attach
else
  PEER=iser-target LUN=0
  TARGETS="iser-target iser-attach"
fi
step "2. build $TARGETS ($BUILD_DIR, clang, RelWithDebInfo)"
if ! ISER_BUILD_TARGETS=$TARGETS bash scripts/build.sh; then
  echo "building $TARGETS failed (see above)" >&2
  exit 1
fi
[[ -x "$ATTACH" ]] || { echo "no $ATTACH after the build" >&2; exit 1; }
[[ $AGAINST_TGT == 1 || -x "$BIN" ]] || { echo "no $BIN after the build" >&2; exit 1; }

CREATED_DIR=
if [[ -n "${ISER_DEMO_DIR:-}" ]]; then
  DATA=$ISER_DEMO_DIR
  if [[ ! -d "$DATA" ]]; then mkdir -p "$DATA"; CREATED_DIR=$DATA; fi
  LUNFILE=$(mktemp "$DATA/demo-lun.XXXXXX.img")
else
  DATA=$(mktemp -d "${TMPDIR:-/tmp}/iser-demo.XXXXXX")
  CREATED_DIR=$DATA
  LUNFILE=$DATA/demo-lun.img
fi
MNT=$(mktemp -d "${TMPDIR:-/tmp}/iser-demo-mnt.XXXXXX")
# Attachment records go to iser-attach's default state dir; remove the dirs we create.
STATE_DIR=/run/iser-csi/attachments
CREATED_STATE=
[[ -d /run/iser-csi ]] || CREATED_STATE=/run/iser-csi
DEV=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  while mountpoint -q "$MNT" 2>/dev/null; do umount "$MNT" || umount -l "$MNT"; done
  rmdir "$MNT" 2>/dev/null
  if [[ -n "$DEV" && -e "$STATE_DIR/$(basename "$DEV").json" ]]; then
    "$ATTACH" --detach "$DEV" || true
  fi
  if [[ -n "$ISER_TARGET_PID" ]]; then iser_target_stop || true; fi
  tgt_stop
  rm -f "$LUNFILE"
  rm -f "$DATA/tgtd.log" "$DATA/iser-target.log" "$DATA/iser-attach.log" "$DATA/fio.out" "$DATA"/fio-*.out
  if [[ -n "$CREATED_DIR" ]]; then rm -rf "$CREATED_DIR"; fi
  if [[ -n "$CREATED_STATE" ]]; then
    rmdir "$STATE_DIR" 2>/dev/null && rmdir "$CREATED_STATE" 2>/dev/null
  fi
  [[ $rc -eq 0 ]] || echo "demo FAILED (exit $rc); cleaned up" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT=${ISER_DEMO_PORT:-3260}
if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; then
  echo "port $PORT is in use; picking a free one"
  PORT=$(free_port)
fi

step "3. start $PEER on 127.0.0.1:$PORT with a sparse $SIZE LUN ($LUNFILE)"
if [[ $AGAINST_TGT == 1 ]]; then
  truncate -s "$SIZE" "$LUNFILE"
  echo "$ setsid tgtd -f --iscsi portal=127.0.0.1:$PORT ...; tgtadm ... --lun 1 --backing-store $LUNFILE"
  tgt_start "$DATA" "$PORT" "$IQN" "$LUNFILE"
else
  echo "$ $BIN --listen 127.0.0.1:$PORT --target $IQN --lun $LUNFILE --size $SIZE &"
  iser_target_start "$BIN" "$DATA" "$PORT" "$IQN" "$LUNFILE" "$SIZE"
  echo "pid $ISER_TARGET_PID, listening; it logs to $DATA/iser-target.log"
fi
run ls -ls "$LUNFILE"

step "4. discovery with libiscsi (a peer nobody here wrote)"
run iscsi-ls -s "iscsi://127.0.0.1:$PORT"

step "5. attach LUN $LUN with iser-attach (built-in initiator -> FUSE file -> loop device)"
OUT=$(run "$ATTACH" --portal "127.0.0.1:$PORT" --target "$IQN" --lun "$LUN" --transport auto \
  --log-file "$DATA/iser-attach.log")
DEV=$(tail -1 <<<"$OUT")
GOT=$(sed -n 's/^transport: //p' <<<"$OUT")
echo "transport: $GOT (asked for auto: iSER first, iSCSI/TCP if the target has no iSER)"
echo "block device: $DEV"
run lsblk -o NAME,SIZE,LOG-SEC,RO,TYPE "$DEV"
run "$ATTACH" --list

step "6. make an ext4 filesystem on $DEV"
run mkfs.ext4 -q -F "$DEV"

step "7. mount it on $MNT, write a 64 MiB file, remount and verify it"
run mount "$DEV" "$MNT"
run dd if=/dev/urandom of="$MNT/data.bin" bs=1M count=64 status=none
SUM=$(sha256sum "$MNT/data.bin" | awk '{print $1}')
echo "sha256 written:  $SUM"
run umount "$MNT"
run mount "$DEV" "$MNT"
SUM2=$(sha256sum "$MNT/data.bin" | awk '{print $1}')
echo "sha256 read back: $SUM2"
[[ "$SUM" == "$SUM2" ]] || { echo "checksum mismatch" >&2; exit 1; }
echo "verified"
run df -h "$MNT"

step "8. fio: 5 s of 4 KiB random read/write, queue depth 16, O_DIRECT, on a file in $MNT"
run fio --name=demo --filename="$MNT/fio.dat" --size=256M --rw=randrw --bs=4k --iodepth=16 \
  --ioengine=libaio --direct=1 --time_based --runtime=5 --group_reporting \
  --output="$DATA/fio.out"
grep -E '^ *(read|write):' "$DATA/fio.out" | sed 's/^ */  /'
grep -E '^ *(READ|WRITE):' "$DATA/fio.out" | sed 's/^ */  /'
rm -f "$MNT/fio.dat"

step "9. unmount and detach $DEV (flush, remove the loop device, unmount FUSE, log out)"
run umount "$MNT"
FUSE_DIR=$(sed -n 's/.*"fuse_mount_dir": "\(.*\)".*/\1/p' "$STATE_DIR/$(basename "$DEV").json")
run "$ATTACH" --detach "$DEV"
LEFT=$(losetup -l -n -O NAME,BACK-FILE | grep -F "$FUSE_DIR/" || true)
[[ -z "$LEFT" ]] || { echo "loop device left: $LEFT" >&2; exit 1; }
if awk '{print $2}' /proc/self/mounts | grep -qxF "$FUSE_DIR"; then
  echo "FUSE mount $FUSE_DIR left behind" >&2
  exit 1
fi
echo "$DEV is gone; no FUSE mount, no attachment record left"
run "$ATTACH" --list
DEV=

step "10. the same fio job on the raw device over iSER and over iSCSI/TCP, side by side"
# Read-only jobs (the filesystem stays intact): 3 s of 4 KiB random reads and 3 s of
# 128 KiB sequential reads, queue depth 32, O_DIRECT, each through a fresh attachment.
if [[ $AGAINST_TGT == 1 ]]; then TRANSPORTS="tcp"; else TRANSPORTS="iser tcp"; fi
declare -A IOPS4K MBS128K
for t in $TRANSPORTS; do
  DEV=$(run "$ATTACH" --portal "127.0.0.1:$PORT" --target "$IQN" --lun "$LUN" --transport "$t" \
    --log-file "$DATA/iser-attach.log" | tail -1)
  run fio --name=rand4k --filename="$DEV" --rw=randread --bs=4k --iodepth=32 --ioengine=libaio \
    --direct=1 --time_based --runtime=3 --output-format=terse --terse-version=3 \
    --output="$DATA/fio-$t-4k.out"
  run fio --name=seq128k --filename="$DEV" --rw=read --bs=128k --iodepth=32 --ioengine=libaio \
    --direct=1 --time_based --runtime=3 --output-format=terse --terse-version=3 \
    --output="$DATA/fio-$t-128k.out"
  # terse v3: field 8 = read IOPS, field 7 = read bandwidth in KiB/s
  IOPS4K[$t]=$(awk -F';' '{print $8}' "$DATA/fio-$t-4k.out")
  MBS128K[$t]=$(awk -F';' '{printf "%.0f", $7 * 1024 / 1e6}' "$DATA/fio-$t-128k.out")
  run "$ATTACH" --detach "$DEV"
  DEV=
  rm -f "$DATA/fio-$t-4k.out" "$DATA/fio-$t-128k.out"
done
printf '  %-10s %16s %22s\n' transport "4K randread IOPS" "128K seq read MB/s"
for t in $TRANSPORTS; do printf '  %-10s %16s %22s\n' "$t" "${IOPS4K[$t]}" "${MBS128K[$t]}"; done
echo "  (one 3 s run each on a shared 2-core box: a demonstration, not a benchmark;"
echo "   tests/bench/bench_iser_eval.sh is the evaluation)"

step "11. stop $PEER"
if [[ $AGAINST_TGT == 1 ]]; then
  echo "tgt ignores SIGTERM: deleting LUN and target with tgtadm --force, then SIGKILL"
  tgt_stop
else
  echo "$ kill -TERM $ISER_TARGET_PID"
  rc=0
  iser_target_stop || rc=$?
  echo "iser-target exited with status $rc; last lines of its log:"
  tail -5 "$DATA/iser-target.log" | sed 's/^/  | /'
  [[ $rc -eq 0 ]] || { echo "expected a clean exit 0 after SIGTERM" >&2; exit 1; }
fi

step "done: removing $LUNFILE${CREATED_DIR:+ and $CREATED_DIR}"
