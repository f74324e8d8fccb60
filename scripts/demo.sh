#!/usr/bin/env bash
# THE demo: build iser-target, serve a sparse LUN over iSCSI/TCP on 127.0.0.1, and use it
# with libiscsi's command-line initiator tools. Leaves nothing behind.
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

if [[ -t 1 ]]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
run() { printf '$ %s\n' "$*" >&2; "$@"; }

step "1. dependencies"
if [[ -n "${ISER_SKIP_DEPS:-}" ]]; then
  echo "ISER_SKIP_DEPS set: not checking packages"
else
  bash scripts/install-deps.sh
fi

if [[ $AGAINST_TGT == 1 ]]; then
  PEER=tgt LUN=1
  step "2. build: skipped (--against-tgt uses the tgt package)"
else
  PEER=iser-target LUN=0
  step "2. build iser-target ($BUILD_DIR, clang, RelWithDebInfo)"
  if ! ISER_BUILD_TARGETS=iser-target bash scripts/build.sh; then
    echo "building iser-target failed (see above)" >&2
    exit 1
  fi
  if [[ ! -x "$BIN" ]]; then
    echo "no $BIN after the build: iser-target has not landed in this tree yet" >&2
    exit 1
  fi
fi

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
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [[ -n "$ISER_TARGET_PID" ]]; then iser_target_stop || true; fi
  tgt_stop
  rm -f "$LUNFILE"
  rm -f "$DATA/tgtd.log" "$DATA/iser-target.log"
  if [[ -n "$CREATED_DIR" ]]; then rm -rf "$CREATED_DIR"; fi
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
PORTAL=iscsi://127.0.0.1:$PORT
URL=$PORTAL/$IQN/$LUN

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

step "4. discovery (SendTargets) and LUN report"
run iscsi-ls -s "$PORTAL"

step "5. standard INQUIRY, then VPD pages: supported (0x00), serial (0x80), device id (0x83)"
run iscsi-inq "$URL"
for page in 0 128 131; do   # iscsi-inq takes the page code in decimal
  # cat -v: iscsi-inq prints binary designators (NAA) raw
  run iscsi-inq -e 1 -c "$page" "$URL" | cat -v || echo "(VPD page $page: not answered)"
done

step "6. READ CAPACITY(16)"
run iscsi-readcapacity16 "$URL"

step "7. write and read data: libiscsi's WRITE(16)/READ(16) conformance cases on this LUN"
echo "(libiscsi-bin 1.19 ships no iscsi-dd; iscsi-test-cu's Write16/Read16 cases write and read back)"
cu_case() {   # run one iscsi-test-cu case, print its CUnit counts, fail if it failed
  local out counts
  printf '$ iscsi-test-cu %s %s\n' "$*" "$URL"
  out=$(iscsi-test-cu -s "$@" "$URL" 2>&1) || true
  counts=$(awk '$1 == "tests" && NF == 6 {print $2, $3, $4, $5}' <<<"$out")
  if [[ -z "$counts" ]]; then echo "$out" | tail -20; echo "iscsi-test-cu did not finish" >&2; return 1; fi
  read -r _ ran passed failed <<<"$counts"
  echo "  tests: $ran run, $passed passed, $failed failed"
  [[ $failed -eq 0 && $ran -gt 0 ]] || { echo "$out" | grep -E 'FAILED|CU_ASSERT' | head -10; return 1; }
}
cu_case -d --test=SCSI.Write16.Simple
cu_case --test=SCSI.Read16.Simple
echo "backing file after the writes (allocated blocks grew, still sparse):"
run ls -ls "$LUNFILE"

perf() {
  local label=$1; shift
  local out
  out=$(iscsi-perf -t 3 "$@" "$URL" 2>&1 | tr '\r' '\n' | grep -o 'iops average [0-9]* ([0-9.]* [KMG]*B/s)' | tail -1 || true)
  printf '  %-34s %s\n' "$label" "${out:-no result (iscsi-perf failed)}"
}
step "8. iscsi-perf bursts, 3 s each (read-only; reads the whole LUN range)"
perf "128 KiB sequential read, QD32:" -b 256 -m 32
perf "4 KiB random read, QD32:" -b 8 -r -m 32
perf "4 KiB random read, QD1:" -b 8 -r -m 1

step "9. stop $PEER"
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
