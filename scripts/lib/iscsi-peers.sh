# shellcheck shell=bash
# Helpers to run iSCSI targets for tests, demo and benchmarks. Source this file.
# Every start_* records what it created; stop_* undoes exactly that (safe to call twice).
#
#   free_port                         -> prints a free TCP port on 127.0.0.1
#   wait_port HOST PORT SECS [PID]    -> waits until HOST:PORT accepts (fails early if PID dies)
#   tgt_start DIR PORT IQN FILE       -> tgtd on 127.0.0.1:PORT, FILE as LUN 1   (sets TGT_*)
#   tgt_stop                          -> deletes LUN/target (--force), SIGKILLs our tgtd
#   iser_target_start BIN DIR PORT IQN FILE SIZE [extra args] -> sets ISER_TARGET_PID
#   iser_target_stop                  -> SIGTERM, waits, returns the target's exit status

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# True while PID runs (a zombie child that has exited but not been reaped counts as gone).
alive() {
  local st
  kill -0 "$1" 2>/dev/null || return 1
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ "$st" != Z ]]
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
  local host=$1 port=$2 secs=$3 pid=${4:-} i
  for ((i = 0; i < secs * 10; i++)); do
    if [[ -n "$pid" ]] && ! alive "$pid"; then
      return 1
    fi
    if timeout 1 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# ---- tgt (Debian package tgt) ----------------------------------------------------
TGT_PID=
TGT_CTL=
TGT_TID=1
TGT_CREATED_RUNDIR=

tgtadm_() { tgtadm -C "$TGT_CTL" --lld iscsi "$@"; }

tgt_start() {
  local dir=$1 port=$2 iqn=$3 file=$4 i
  command -v tgtd >/dev/null || { echo "tgtd not found (apt-get install tgt)" >&2; return 1; }
  # A control port of our own (tgtd -C N uses /var/run/tgtd/socket.N), so we never talk
  # to, or collide with, another tgtd on this machine.
  for ((i = 0; i < 50; i++)); do
    TGT_CTL=$((1000 + RANDOM % 31000))   # tgtd accepts -C up to 32767
    [[ -e /var/run/tgtd/socket.$TGT_CTL || -e /var/run/tgtd/socket.$TGT_CTL.lock ]] || break
  done
  [[ -d /var/run/tgtd ]] || TGT_CREATED_RUNDIR=1
  setsid tgtd -f --iscsi portal="127.0.0.1:$port" -C "$TGT_CTL" >"$dir/tgtd.log" 2>&1 &
  TGT_PID=$!
  for ((i = 0; i < 100; i++)); do
    tgtadm_ --mode target --op show >/dev/null 2>&1 && break
    alive "$TGT_PID" || { cat "$dir/tgtd.log" >&2; return 1; }
    sleep 0.1
  done
  tgtadm_ --mode target --op new --tid "$TGT_TID" --targetname "$iqn"
  tgtadm_ --mode logicalunit --op new --tid "$TGT_TID" --lun 1 --backing-store "$file"
  tgtadm_ --mode target --op bind --tid "$TGT_TID" -I ALL
  wait_port 127.0.0.1 "$port" 10 "$TGT_PID" || { cat "$dir/tgtd.log" >&2; return 1; }
}

tgt_stop() {
  [[ -n "$TGT_PID" ]] || return 0
  tgtadm_ --mode logicalunit --op delete --tid "$TGT_TID" --lun 1 >/dev/null 2>&1 || true
  tgtadm_ --mode target --op delete --force --tid "$TGT_TID" >/dev/null 2>&1 || true
  kill -KILL "$TGT_PID" 2>/dev/null || true   # tgtd ignores SIGTERM
  wait "$TGT_PID" 2>/dev/null || true
  rm -f "/var/run/tgtd/socket.$TGT_CTL" "/var/run/tgtd/socket.$TGT_CTL.lock"
  if [[ -n "$TGT_CREATED_RUNDIR" ]]; then rmdir /var/run/tgtd 2>/dev/null || true; fi
  TGT_PID=
}

# ---- iser-target (this project) ---------------------------------------------------
ISER_TARGET_PID=

iser_target_start() {
  local bin=$1 dir=$2 port=$3 iqn=$4 file=$5 size=$6
  shift 6
  [[ -x "$bin" ]] || { echo "iser-target binary not found or not executable: $bin" >&2; return 1; }
  "$bin" --listen "127.0.0.1:$port" --target "$iqn" --lun "$file" --size "$size" "$@" \
    >"$dir/iser-target.log" 2>&1 &
  ISER_TARGET_PID=$!
  if ! wait_port 127.0.0.1 "$port" 15 "$ISER_TARGET_PID"; then
    echo "iser-target did not start listening on 127.0.0.1:$port; its log:" >&2
    cat "$dir/iser-target.log" >&2
    return 1
  fi
}

# Returns the target's exit status after SIGTERM (0 = clean drain), 124 if it had to be
# SIGKILLed after 40 s (the daemon's default --drain-timeout is 30 s).
iser_target_stop() {
  local rc=0 i
  [[ -n "$ISER_TARGET_PID" ]] || return 0
  kill -TERM "$ISER_TARGET_PID" 2>/dev/null || true
  for ((i = 0; i < 400; i++)); do
    alive "$ISER_TARGET_PID" || break
    sleep 0.1
  done
  if alive "$ISER_TARGET_PID"; then
    echo "iser-target did not exit 40 s after SIGTERM; sending SIGKILL" >&2
    kill -KILL "$ISER_TARGET_PID" 2>/dev/null || true
    wait "$ISER_TARGET_PID" 2>/dev/null || true
    rc=124
  else
    wait "$ISER_TARGET_PID" 2>/dev/null || rc=$?
  fi
  ISER_TARGET_PID=
  return "$rc"
}
