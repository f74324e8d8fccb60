#!/usr/bin/env bash
# iser-target's command line as scripts use it: bad input gives one line on stderr and a
# non-zero exit; a good start serves LUNs; SIGTERM with I/O in flight drains and exits 0.
#   daemon_cli_test.sh BIN
set -euo pipefail
BIN=$1
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
fails=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
IQN=iqn.2026-11.org.iser-csi:cli

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# expect_error CODE NAME ARGS...: exits with CODE and prints exactly one stderr line.
expect_error() {
  local want=$1 name=$2; shift 2
  local rc=0
  timeout 10 "$BIN" "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  local lines; lines=$(wc -l <"$WORK/err")
  if [ "$rc" = "$want" ] && [ "$lines" = 1 ] && grep -q '^iser-target: ' "$WORK/err"; then
    pass "$name: exit $rc: $(cat "$WORK/err")"
  else
    fail "$name: exit $rc (want $want), $lines stderr lines: $(head -3 "$WORK/err")"
  fi
}

expect_error 2 "unknown flag" --bogus
expect_error 2 "missing value" --target
expect_error 2 "lun before target" --lun "$WORK/x.img"
expect_error 2 "bad size" --target $IQN --lun "$WORK/x.img" --size 12Q
expect_error 2 "bad iqn" --target not-an-iqn
expect_error 2 "bad --mpa-crc" --mpa-crc maybe --target $IQN
expect_error 2 "no target" --listen 127.0.0.1:0
expect_error 1 "missing file without size" --listen 127.0.0.1:0 --target $IQN --lun "$WORK/missing.img"
mkdir -p "$WORK/dir.img"
expect_error 1 "directory as LUN" --listen 127.0.0.1:0 --target $IQN --lun "$WORK/dir.img"
expect_error 1 "bad listen address" --listen nowhere:3260 --target $IQN --lun "$WORK/a.img" --size 1M

# A busy port: hold it with a first instance.
PORT=$(free_port)
"$BIN" --listen 127.0.0.1:$PORT --target $IQN --lun "$WORK/a.img" --size 64M 2>"$WORK/first.log" &
FIRST=$!
PIDS+=("$FIRST")
for _ in $(seq 50); do
  iscsi-ls -s "iscsi://127.0.0.1:$PORT" >/dev/null 2>&1 && break
  sleep 0.1
done
expect_error 1 "busy port" --listen 127.0.0.1:$PORT --target $IQN --lun "$WORK/b.img" --size 1M
# The same LUN file served twice would corrupt it: the second instance must refuse.
expect_error 1 "LUN file in use" --listen 127.0.0.1:0 --target $IQN --lun "$WORK/a.img"

# It serves what it was told: one 64 MiB LUN, a sparse file.
if iscsi-readcapacity16 "iscsi://127.0.0.1:$PORT/$IQN/0" 2>/dev/null | grep -q "Total size:67108864"; then
  pass "LUN 0 is 64 MiB"
else
  fail "READ CAPACITY(16): $(iscsi-readcapacity16 "iscsi://127.0.0.1:$PORT/$IQN/0" 2>&1 | head -3)"
fi
alloc=$(du -k "$WORK/a.img" | cut -f1)
[ "$alloc" -lt 1024 ] && pass "backing file is sparse (${alloc} KiB allocated)" \
                      || fail "backing file not sparse: ${alloc} KiB"

# SIGTERM while 32 reads are in flight: drain, exit 0, say so.
# (iscsi-perf retries a lost target forever and ignores SIGTERM: it is KILLed below.)
iscsi-perf -b 256 -m 32 "iscsi://127.0.0.1:$PORT/$IQN/0" >/dev/null 2>&1 &
PERF=$!
PIDS+=("$PERF")
sleep 1.5
kill -TERM "$FIRST"
rc=0
timeout 35 tail --pid="$FIRST" -f /dev/null || rc=$?
wait "$FIRST" || rc=$?
if [ "$rc" = 0 ] && grep -q "signal received: draining" "$WORK/first.log" \
   && grep -q "iser-target stopped" "$WORK/first.log"; then
  pass "SIGTERM under load: drained and exited 0"
else
  fail "SIGTERM under load: exit $rc; log tail: $(tail -5 "$WORK/first.log")"
fi
kill -9 "$PERF" 2>/dev/null || true
wait "$PERF" 2>/dev/null || true

echo "$(( 13 - fails )) passed, $fails failed"
[ "$fails" = 0 ]
