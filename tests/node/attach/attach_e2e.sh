#!/usr/bin/env bash
# End-to-end tests of iser-attach (built-in initiator + fuse_loop) against a real target.
#
#   attach_e2e.sh --attach BIN --target-bin BIN --case CASE [--peer iser-target|tgt]
#                 [--transport iser|tcp|auto] [--connections N]
#
# --transport is passed to every attach and the attachment must report the transport
# it asked for (auto: iser against iser-target, tcp against tgt, which has no iSER).
#
# Cases:
#   fs      attach, mkfs.ext4, mount, write files with known sha256, umount, detach,
#           attach again, fsck, mount, verify, umount, detach
#   fio     fio verify=crc32c on the raw device: random 4 KiB and sequential 128 KiB
#           writes at iodepth 32
#   fault   a verifying fio write job while iser-target is SIGKILLed and restarted on the
#           same port with the same LUN file (with tgt: our TCP connection is destroyed
#           twice with ss -K): the job completes and verifies
#   errors  one-line errors and non-zero exits: unreachable portal, wrong IQN, bad CHAP,
#           missing LUN, unsupported transport, unknown device; CHAP + mutual CHAP attach,
#           --list, detach refused while mounted
# Needs root, /dev/fuse and loop devices. Exit 77 (skip) when a tool or tgtd is missing.
# Cleans up everything it created (devices, mounts, processes, records, files) on any exit.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../../scripts/lib/iscsi-peers.sh
source "$HERE/../../../scripts/lib/iscsi-peers.sh"

ATTACH= TARGET_BIN= CASE= PEER=iser-target TRANSPORT=auto CONNECTIONS=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --transport) TRANSPORT=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --attach) ATTACH=$2; shift 2 ;;
    --target-bin) TARGET_BIN=$2; shift 2 ;;
    --case) CASE=$2; shift 2 ;;
    --peer) PEER=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || skip "needs root"
[[ -e /dev/fuse && -e /dev/loop-control ]] || skip "needs /dev/fuse and /dev/loop-control"
for t in mkfs.ext4 e2fsck fio sha256sum python3; do
  command -v "$t" >/dev/null || skip "$t not installed (scripts/install-deps.sh)"
done
if [[ $PEER == tgt ]]; then
  command -v tgtd >/dev/null || skip "tgtd not installed (apt-get install tgt)"
fi
[[ -x $ATTACH ]] || fail "no iser-attach binary at $ATTACH"

WORK=$(mktemp -d /tmp/iser-attach-e2e.XXXXXX)
STATE=$WORK/state
MNT=$WORK/mnt
mkdir -p "$MNT" "$STATE"
cd "$WORK" || exit 1   # fio writes nothing here (verify_state_save=0), but just in case
IQN=iqn.2026-11.org.iser-csi:attach-test
LUNFILE=$WORK/lun.img
SIZE=256M
PORT=$(free_port)
LUN=0
TARGET_EXTRA=()

cleanup() {
  local rc=$? r dev pid m
  trap - EXIT INT TERM
  set +e
  # fio first (it may hold the device); it may be stuck until the attachment goes away.
  if [[ -n ${FIO_PID:-} ]]; then pkill -KILL -P "$FIO_PID" 2>/dev/null; kill -KILL "$FIO_PID" 2>/dev/null; fi
  while mountpoint -q "$MNT" 2>/dev/null; do umount "$MNT" || umount -l "$MNT"; done
  for r in "$STATE"/*.json; do
    [[ -e $r ]] || continue
    dev=$(sed -n 's/.*"device": "\(.*\)".*/\1/p' "$r")
    pid=$(sed -n 's/.*"pid": \([0-9]*\).*/\1/p' "$r")
    echo "cleanup: detaching leftover $dev (pid $pid)"
    for m in $(awk -v d="$dev" '$1 == d {print $2}' /proc/self/mounts); do umount -l "$m"; done
    # --force: abort the FUSE connection and kill the server if a clean detach hangs.
    timeout 60 "$ATTACH" --state-dir "$STATE" --detach "$dev" --timeout 10 --force
    [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null
    rm -f "$r"
  done
  if [[ -n ${FIO_PID:-} ]]; then wait "$FIO_PID" 2>/dev/null; fi
  if [[ -n $ISER_TARGET_PID ]]; then iser_target_stop; fi
  tgt_stop
  if [[ $rc -ne 0 && $rc -ne 77 ]]; then
    for f in "$WORK"/*.log; do
      [[ -e $f ]] || continue
      echo "---- last lines of $f"; tail -25 "$f"
    done
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_peer() {
  truncate -s "$SIZE" "$LUNFILE"
  if [[ $PEER == tgt ]]; then
    LUN=1
    tgt_start "$WORK" "$PORT" "$IQN" "$LUNFILE" || fail "tgtd did not start"
  else
    [[ -x $TARGET_BIN ]] || fail "no iser-target at $TARGET_BIN"
    iser_target_start "$TARGET_BIN" "$WORK" "$PORT" "$IQN" "$LUNFILE" "$SIZE" \
      "${TARGET_EXTRA[@]}" || fail "iser-target did not start"
  fi
  log "$PEER on 127.0.0.1:$PORT, LUN $LUN = $LUNFILE ($SIZE sparse)"
}

expected_transport() {
  case $TRANSPORT in
    auto) if [[ $PEER == tgt ]]; then echo tcp; else echo iser; fi ;;
    *) echo "$TRANSPORT" ;;
  esac
}

attach() {   # prints the device path; extra args are passed through
  local out got want
  out=$("$ATTACH" --state-dir "$STATE" --log-file "$WORK/iser-attach.log" --verbose \
    --portal "127.0.0.1:$PORT" --target "$IQN" --lun "$LUN" --transport "$TRANSPORT" \
    --connections "$CONNECTIONS" "$@") || return 1
  got=$(sed -n 's/^transport: //p' <<<"$out")
  want=$(expected_transport)
  [[ $got == "$want" ]] || { echo "attach reported transport '$got', want '$want'" >&2; return 1; }
  echo "attach: --transport $TRANSPORT got $got" >&2
  if ((CONNECTIONS > 1)); then
    grep -q "($CONNECTIONS connections)" "$WORK/iser-attach.log" ||
      { echo "the session did not get $CONNECTIONS connections" >&2; return 1; }
    echo "attach: $CONNECTIONS connections in the session" >&2
  fi
  tail -1 <<<"$out"
}

fuse_dir_of() { sed -n 's/.*"fuse_mount_dir": "\(.*\)".*/\1/p' "$STATE/$(basename "$1").json"; }
serving_pid_of() { sed -n 's/.*"pid": \([0-9]*\).*/\1/p' "$STATE/$(basename "$1").json"; }

# The serving process of an idle attachment must sleep: under a fifth of a CPU over 1 s
# (a loop left spinning on a readable fd, as the iSER CM channel did after a connection
# went away, would take all of it).
expect_idle() {   # device, what-happened-before
  local pid ticks0 ticks1 hz
  pid=$(serving_pid_of "$1")
  [[ -n $pid ]] || fail "no serving pid for $1"
  sleep 0.3
  ticks0=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
  sleep 1
  ticks1=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
  hz=$(getconf CLK_TCK)
  ((ticks1 - ticks0 < hz / 5)) ||
    fail "the serving process of $1 used $((ticks1 - ticks0)) of $hz CPU ticks" \
      "in an idle second after $2"
  log "serving process idle after $2 ($((ticks1 - ticks0)) of $hz ticks in 1 s)"
}

detach() {
  local dir
  dir=$(fuse_dir_of "$1")
  "$ATTACH" --state-dir "$STATE" --detach "$1" || fail "detach $1 failed"
  detach_checks "$1" "$dir"
}

detach_checks() {   # device, its FUSE mount dir
  [[ ! -e $STATE/$(basename "$1").json ]] || fail "record of $1 left behind"
  [[ -n $2 ]] || fail "no FUSE mount dir recorded for $1"
  if losetup -l -n -O NAME,BACK-FILE | grep -qF "$2/"; then
    fail "a loop device is still bound to $2/lun after detach"
  fi
  if awk '{print $2}' /proc/self/mounts | grep -qxF "$2"; then fail "FUSE still mounted at $2"; fi
  [[ ! -e $2 ]] || fail "FUSE mount dir $2 left behind"
  if awk '{print $2}' /proc/self/mounts | grep -q "^$WORK"; then fail "mounts left under $WORK"; fi
  log "detached $1 (no loop binding, no FUSE mount, no record)"
}

check_blockdev() {
  local dev=$1 bytes
  [[ -b $dev ]] || fail "$dev is not a block device"
  bytes=$(blockdev --getsize64 "$dev")
  [[ $bytes == $((256 << 20)) ]] || fail "$dev has $bytes bytes, want $((256 << 20))"
}

case_fs() {
  start_peer
  local dev dev2
  dev=$(attach) || fail "attach failed"
  log "attached: $dev"
  check_blockdev "$dev"
  "$ATTACH" --state-dir "$STATE" --list | tee "$WORK/list.out"
  grep -q "^$dev .*serving" "$WORK/list.out" || fail "--list does not show $dev serving"
  grep -q "^$dev .* $(expected_transport) .*serving" "$WORK/list.out" ||
    fail "--list does not show the transport of $dev"
  mkfs.ext4 -q -F "$dev" || fail "mkfs.ext4"
  mount "$dev" "$MNT" || fail "mount"
  mkdir -p "$MNT/dir"
  head -c 1000000 /dev/urandom >"$MNT/a.bin"
  head -c $((9 << 20)) /dev/urandom >"$MNT/dir/b.bin"
  echo "hello from iser-attach" >"$MNT/dir/c.txt"
  (cd "$MNT" && sha256sum a.bin dir/b.bin dir/c.txt) >"$WORK/sums"
  cat "$WORK/sums"
  umount "$MNT" || fail "umount"
  detach "$dev"
  dev2=$(attach) || fail "second attach failed"
  log "attached again: $dev2"
  e2fsck -fn "$dev2" >"$WORK/fsck.log" 2>&1 || { cat "$WORK/fsck.log"; fail "e2fsck found errors"; }
  mount "$dev2" "$MNT" || fail "second mount"
  (cd "$MNT" && sha256sum -c "$WORK/sums") || fail "checksums differ after re-attach"
  umount "$MNT" || fail "second umount"
  detach "$dev2"
  [[ $(ls -A "$STATE") == "" ]] || fail "state dir not empty: $(ls -A "$STATE")"
  log "PASS fs ($PEER, $TRANSPORT)"
}

run_fio() {   # name, extra fio args
  local name=$1; shift
  fio --name="$name" --filename="$DEV" --direct=1 --ioengine=libaio --iodepth=32 \
    --verify=crc32c --verify_fatal=1 --verify_state_save=0 --do_verify=1 \
    --output="$WORK/fio-$name.out" "$@"
}

case_fio() {
  start_peer
  DEV=$(attach) || fail "attach failed"
  log "attached: $DEV"
  check_blockdev "$DEV"
  run_fio rand4k --rw=randwrite --bs=4k --size=64M || { cat "$WORK/fio-rand4k.out"; fail "fio randwrite 4k"; }
  grep -E 'WRITE:|READ:' "$WORK/fio-rand4k.out"
  run_fio seq128k --rw=write --bs=128k --size=256M || { cat "$WORK/fio-seq128k.out"; fail "fio write 128k"; }
  grep -E 'WRITE:|READ:' "$WORK/fio-seq128k.out"
  grep -q "verify" "$WORK/fio-seq128k.out" || true
  detach "$DEV"
  log "PASS fio ($PEER, $TRANSPORT)"
}

case_fault() {
  if [[ $PEER == tgt ]]; then
    command -v ss >/dev/null || skip "ss (iproute2) not installed"
  fi
  start_peer
  DEV=$(attach) || fail "attach failed"
  log "attached: $DEV"
  # verify_backlog: fio reads back and checks what it wrote every 2048 writes, so the job
  # writes and verifies throughout, and everything is verified again at the end.
  run_fio fault --rw=randwrite --bs=4k --size=256M --verify_backlog=2048 &
  FIO_PID=$!
  sleep 1.5
  alive "$FIO_PID" || fail "fio finished before the fault; make the job longer"
  if [[ $PEER == tgt ]]; then
    # tgt keeps running: destroy our TCP connection to it (SOCK_DESTROY, an RST), twice.
    local i
    for i in 1 2; do
      log "killing the TCP connection to tgt (ss -K dport $PORT), $i of 2"
      ss -K dst 127.0.0.1 dport = "$PORT" >/dev/null || fail "ss -K failed"
      sleep 1
      alive "$FIO_PID" || break
    done
  else
    log "SIGKILL iser-target (pid $ISER_TARGET_PID) in the middle of the write job"
    kill -KILL "$ISER_TARGET_PID"
    wait "$ISER_TARGET_PID" 2>/dev/null
    ISER_TARGET_PID=
    sleep 1
    alive "$FIO_PID" || fail "fio ended while the target was down"
    mv "$WORK/iser-target.log" "$WORK/iser-target-1.log"
    # With --transport auto the target comes back serving iSCSI/TCP only: the
    # reinstatement falls back to TCP and the attachment record must follow it.
    local restart_extra=()
    [[ $TRANSPORT == auto ]] && restart_extra=(--transport tcp)
    iser_target_start "$TARGET_BIN" "$WORK" "$PORT" "$IQN" "$LUNFILE" "$SIZE" \
      "${restart_extra[@]}" || fail "iser-target did not restart"
    log "iser-target restarted (pid $ISER_TARGET_PID) on the same port and LUN file" \
      "${restart_extra[*]}"
  fi
  local rc=0
  wait "$FIO_PID" || rc=$?
  FIO_PID=
  grep -E 'err=|IOPS|issued rwts|READ:|WRITE:' "$WORK/fio-fault.out"
  [[ $rc == 0 ]] || { cat "$WORK/fio-fault.out"; fail "fio failed (exit $rc) across the fault"; }
  grep -q "err= 0" "$WORK/fio-fault.out" || fail "fio reported errors"
  grep -E "lost|reinstated" "$WORK/iser-attach.log" | tail -4
  grep -q "reinstated" "$WORK/iser-attach.log" || fail "the initiator never reinstated the session"
  expect_idle "$DEV" "the reinstatement"
  if [[ $PEER == iser-target && $TRANSPORT == auto ]]; then
    "$ATTACH" --state-dir "$STATE" --list | tee "$WORK/list.out"
    grep -q "^$DEV .* tcp .*serving" "$WORK/list.out" ||
      fail "--list does not show that $DEV fell back to tcp"
    log "the record followed the session from iser to tcp"
  fi
  detach "$DEV"
  log "PASS fault ($PEER, $TRANSPORT)"
}

expect_error() {   # expected-text, args...
  local want=$1 out rc=0; shift
  out=$("$ATTACH" --state-dir "$STATE" --log-file "$WORK/iser-attach.log" "$@" 2>&1) || rc=$?
  echo "  \$ iser-attach $* -> exit $rc: $out"
  [[ $rc -ne 0 ]] || fail "expected a failure for: $*"
  [[ $(wc -l <<<"$out") == 1 ]] || fail "expected a one-line error, got: $out"
  grep -qi -- "$want" <<<"$out" || fail "expected '$want' in: $out"
}

case_errors_tgt() {
  start_peer
  local p="127.0.0.1:$PORT"
  expect_error "no target" --portal "$p" --target iqn.2026-11.org.iser-csi:nope --lun 1
  expect_error "no LUN 5" --portal "$p" --target "$IQN" --lun 5
  expect_error "not a block device" --portal "$p" --target "$IQN" --lun 0
  [[ $(ls -A "$STATE") == "" ]] || fail "failed attaches left records: $(ls -A "$STATE")"
  log "PASS errors (tgt)"
}

case_errors() {
  [[ $PEER == tgt ]] && { case_errors_tgt; return; }
  TARGET_EXTRA=(--chap-user alice --chap-secret alice-secret-12 --mutual-chap-user tgt
    --mutual-chap-secret target-secret-1)
  start_peer
  local p="127.0.0.1:$PORT" dead
  dead=$(free_port)
  expect_error "cannot reach portal" --portal "127.0.0.1:$dead" --target "$IQN" --lun 0
  expect_error "no target" --portal "$p" --target iqn.2026-11.org.iser-csi:nope --lun 0 \
    --chap-user alice --chap-secret alice-secret-12
  expect_error "authentication failed" --portal "$p" --target "$IQN" --lun 0 \
    --chap-user alice --chap-secret wrong-secret-123
  expect_error "authentication failed" --portal "$p" --target "$IQN" --lun 0
  expect_error "authentication failed" --portal "$p" --target "$IQN" --lun 0 \
    --chap-user alice --chap-secret alice-secret-12 --mutual-chap-user tgt \
    --mutual-chap-secret not-the-target-1
  expect_error "no LUN 7" --portal "$p" --target "$IQN" --lun 7 \
    --chap-user alice --chap-secret alice-secret-12
  expect_error "unknown transport" --portal "$p" --target "$IQN" --lun 0 --transport rdma
  expect_error "not attached" --detach /dev/loop250
  [[ $(ls -A "$STATE") == "" ]] || fail "failed attaches left records: $(ls -A "$STATE")"
  local dev
  dev=$(attach --chap-user alice --chap-secret alice-secret-12 --mutual-chap-user tgt \
    --mutual-chap-secret target-secret-1) || fail "attach with mutual CHAP failed"
  log "attached with mutual CHAP: $dev"
  check_blockdev "$dev"
  "$ATTACH" --state-dir "$STATE" --list
  mkfs.ext4 -q -F "$dev" && mount "$dev" "$MNT" || fail "mkfs/mount"
  expect_error "mounted" --detach "$dev"
  umount "$MNT"
  detach "$dev"
  "$ATTACH" --state-dir "$STATE" --list | grep -q "no attachments" || fail "--list not empty"
  # A serving process that died: --list says stale, --detach cleans up after it.
  dev=$(attach --chap-user alice --chap-secret alice-secret-12) || fail "attach failed"
  local pid
  pid=$(sed -n 's/.*"pid": \([0-9]*\).*/\1/p' "$STATE/$(basename "$dev").json")
  local fdir
  fdir=$(fuse_dir_of "$dev")
  kill -KILL "$pid"
  for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
  "$ATTACH" --state-dir "$STATE" --list | tee "$WORK/list.out"
  grep -q "^$dev .*stale" "$WORK/list.out" || fail "--list does not show $dev as stale"
  "$ATTACH" --state-dir "$STATE" --detach "$dev" || fail "detach of a stale attachment"
  detach_checks "$dev" "$fdir"
  log "PASS errors"
}

case $CASE in
  fs) case_fs ;;
  fio) case_fio ;;
  fault) case_fault ;;
  errors) case_errors ;;
  *) fail "unknown --case $CASE" ;;
esac
