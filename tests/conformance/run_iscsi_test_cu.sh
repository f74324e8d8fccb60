#!/usr/bin/env bash
# Run libiscsi's conformance suite (iscsi-test-cu, --test=ALL, two paths for MultipathIO)
# against iser-target and check the result against expectations.txt.
#
#   run_iscsi_test_cu.sh [options] <iser-target-binary>
#   run_iscsi_test_cu.sh [options] --against-tgt        # validate the harness with tgt
# Options:
#   --expect FILE    expectations (default: expectations.txt; expectations-tgt.txt for tgt)
#   --timeout SECS   limit for the iscsi-test-cu run (default 900)
#   --size SIZE      LUN size for the sparse backing file (default 1G)
#   --test PATTERN   iscsi-test-cu --test (default ALL; FAMILY[.SUITE[.TEST]] works in 1.19)
#   --log FILE       keep the full iscsi-test-cu log here (default: only printed on error)
# Exit status: 0 when there are no failures and no unexpected skips.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../scripts/lib/iscsi-peers.sh
source "$HERE/../../scripts/lib/iscsi-peers.sh"

AGAINST_TGT=0 EXPECT='' TIMEOUT=900 SIZE=1G TEST=ALL KEEP_LOG='' BIN=''
while [[ $# -gt 0 ]]; do
  case $1 in
    --against-tgt) AGAINST_TGT=1 ;;
    --expect) EXPECT=$2; shift ;;
    --timeout) TIMEOUT=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --test) TEST=$2; shift ;;
    --log) KEEP_LOG=$2; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) BIN=$1 ;;
  esac
  shift
done
if [[ $AGAINST_TGT == 0 && -z "$BIN" ]]; then
  echo "usage: $0 [options] <iser-target-binary> | --against-tgt" >&2
  exit 2
fi
for tool in iscsi-test-cu python3; do
  command -v "$tool" >/dev/null || { echo "$tool not found (bash scripts/install-deps.sh)" >&2; exit 1; }
done

if [[ $AGAINST_TGT == 1 ]]; then
  PEER=tgt LUN=1 IQN=iqn.2026-11.org.iser-csi:conformance-tgt
  EXPECT=${EXPECT:-$HERE/expectations-tgt.txt}
else
  PEER=iser-target LUN=0 IQN=iqn.2026-11.org.iser-csi:conformance
  EXPECT=${EXPECT:-$HERE/expectations.txt}
  BIN=$(realpath "$BIN")
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/iser-conformance.XXXXXX")
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [[ -n "${CU_PID:-}" ]] && kill -KILL "$CU_PID" 2>/dev/null
  tgt_stop
  if [[ -n "$ISER_TARGET_PID" ]]; then iser_target_stop || true; fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT=$(free_port)
LUNFILE=$WORK/lun.img
log "starting $PEER on 127.0.0.1:$PORT (LUN $LUN: sparse $SIZE file in $WORK)"
if [[ $AGAINST_TGT == 1 ]]; then
  truncate -s "$SIZE" "$LUNFILE"
  tgt_start "$WORK" "$PORT" "$IQN" "$LUNFILE"
else
  iser_target_start "$BIN" "$WORK" "$PORT" "$IQN" "$LUNFILE" "$SIZE"
fi

URL=iscsi://127.0.0.1:$PORT/$IQN/$LUN
log "iscsi-test-cu -d -v --test=$TEST $URL $URL   (timeout ${TIMEOUT}s)"
CU_LOG=$WORK/iscsi-test-cu.log
start=$SECONDS
# -v: verbose CUnit output names every test, so skips can be attributed (-n does not).
set +e
timeout --kill-after=10 "$TIMEOUT" iscsi-test-cu -d -v --test="$TEST" "$URL" "$URL" \
  >"$CU_LOG" 2>&1 &
CU_PID=$!
wait "$CU_PID"
cu_rc=$?
CU_PID=
set -e
log "iscsi-test-cu finished in $((SECONDS - start)) s (exit $cu_rc)"
[[ -n "$KEEP_LOG" ]] && cp "$CU_LOG" "$KEEP_LOG" && log "full log: $KEEP_LOG"

rc=0
python3 "$HERE/cunit_report.py" "$CU_LOG" "$EXPECT" \
  --title "iscsi-test-cu --test=$TEST vs $PEER ($URL), expectations $(basename "$EXPECT")" || rc=1
if [[ $cu_rc -eq 124 || $cu_rc -eq 137 ]]; then
  echo "ERROR: iscsi-test-cu hit the ${TIMEOUT}s timeout"
  rc=1
elif [[ $cu_rc -gt 128 ]]; then
  echo "ERROR: iscsi-test-cu died with signal $((cu_rc - 128))"
  rc=1
fi

if [[ $AGAINST_TGT == 0 ]]; then
  if ! alive "$ISER_TARGET_PID"; then
    echo "ERROR: iser-target exited during the run; its log:"
    tail -50 "$WORK/iser-target.log"
    wait "$ISER_TARGET_PID" || true
    ISER_TARGET_PID=
    rc=1
  else
    trc=0
    iser_target_stop || trc=$?
    if [[ $trc -ne 0 ]]; then
      echo "ERROR: iser-target exited with status $trc after SIGTERM (expected a clean 0)"
      tail -20 "$WORK/iser-target.log"
      rc=1
    else
      log "iser-target drained and exited 0 on SIGTERM"
    fi
  fi
fi
if [[ $rc -ne 0 && -z "$KEEP_LOG" ]]; then
  echo "--- last 40 lines of the iscsi-test-cu log ---"
  tail -40 "$CU_LOG"
fi
exit "$rc"
