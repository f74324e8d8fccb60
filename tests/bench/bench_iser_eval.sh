#!/usr/bin/env bash
# The evaluation benchmark (issue 5): iSER over the user-space software iWARP vs iSCSI over
# TCP on loopback, in one run, against ONE iser-target process and ONE LUN (a file filled
# with random bytes in /dev/shm; the target serves TCP and iSER on one port with
# --transport any). The initiator is initiator-bench (LunHandle, no block device).
#
# Rows: 4 KiB random read/write at QD 1, 32, 128 and 128 KiB sequential read/write at
# QD32; with 1 and 2 connections per session; writes with (ImmediateData=Yes,
# InitialR2T=No) and (ImmediateData=No, InitialR2T=Yes). Reads run once per row: the two
# keys only govern how write data leaves the initiator (RFC 7143 sec 13.10-13.11), a read
# sends none, so their column says "-". "conns" is the connections of the one session
# (MC/S, MaxConnections=2; commands go out round robin from one initiator loop thread;
# the run fails if the target allowed fewer). QD1 has no 2-connection row (one would sit
# idle). MPA CRC32C (RFC 5044) is on in every row but the last four, which repeat
# 4 KiB random read and the 128 KiB rows with it off at both ends (iser-target --mpa-crc
# no, initiator-bench --mpa-crc no, as Linux siw runs by default): iSCSI/TCP here runs
# without digests, so those rows compare the same integrity checking (TCP's checksum).
# Rows with MPA CRC on also measure a third peer, "TCP+dig": iSCSI/TCP with HeaderDigest
# and DataDigest CRC32C (RFC 7143 sec 13.1), i.e. the same CRC32C over every byte that
# MPA computes; its column "iSER/TCP+dig" compares equal integrity checking. The plain
# TCP column stays the headline peer.
# For each row the TCP and iSER cells run back to back (alternating which goes first),
# so both see the same machine load; --rounds N repeats the whole list and prints medians.
#
# Columns: MB/s, IOPS, mean and p99 latency (exact, from every I/O), CPU seconds per GB
# moved for the initiator process (getrusage) and the target process (/proc/PID/stat),
# both over the measured interval only; iSER/TCP = ratio of MB/s; "others" = CPU used
# by other processes during the cell, in % of the whole machine (noise indicator; it
# leaves out irq/softirq time, most of which on loopback is our own TCP receive work and
# is charged to neither process: the footer gives its median share).
# After every cell the target must go idle (under half a CPU over 0.25 s); one that keeps
# spinning is a PROBLEM (it would skew the next cell) and fails the run.
# Not a ctest (timings); --smoke is (a few 1 s cells, checks every cell worked).
#
#   bench_iser_eval.sh [--build DIR] [--seconds S] [--rounds N] [--size-mib N]
#                      [--transports "tcp iser"] [--smoke] [--keep-results FILE]
#     --build DIR          where iser-target and initiator-bench are (default build/), or
#     --target-bin BIN --initiator-bench BIN
#     --seconds S          per cell, default 3 (--smoke: 1 s, a 64 MiB LUN, five rows)
#     --rounds N           default 1 (~2.5 min); 3 for a noisy machine (~7 min)
#     --size-mib N         LUN size, default 1024 (filled from /dev/urandom)
#     --transports LIST    default "tcp iser"; one that does not work fails the run
#     --keep-results FILE  the raw RESULT lines of initiator-bench, one per cell
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../../scripts/lib/iscsi-peers.sh
source "$ROOT/scripts/lib/iscsi-peers.sh"
BUILD=$ROOT/build SECS=3 ROUNDS=1 SIZE_MIB=1024 SMOKE=0 TRANSPORTS="tcp iser" KEEP=
TARGET_BIN="" IBENCH=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift ;;
    --target-bin) TARGET_BIN=$2; shift ;;
    --initiator-bench) IBENCH=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --size-mib) SIZE_MIB=$2; shift ;;
    --transports) TRANSPORTS=$2; shift ;;
    --smoke) SMOKE=1 ;;
    --keep-results) KEEP=$2; shift ;;
    -h|--help) sed -n '2,39p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ $SMOKE == 1 ]]; then
  SECS=1
  ROUNDS=1
  SIZE_MIB=64
fi
TARGET_BIN=${TARGET_BIN:-$BUILD/iser/target/iser-target}
IBENCH=${IBENCH:-$BUILD/node/attach/initiator-bench}
for b in "$TARGET_BIN" "$IBENCH"; do
  [[ -x $b ]] || { echo "missing $b (build iser-target initiator-bench)" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 1; }

WORK=$(mktemp -d /tmp/iser-bench-eval.XXXXXX)
SHM=$(mktemp -d /dev/shm/iser-bench-eval.XXXXXX)
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [[ -n $ISER_TARGET_PID ]]; then iser_target_stop || true; fi
  rm -rf "$WORK" "$SHM"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

IQN=iqn.2026-11.org.iser-csi:eval
LUNFILE=$SHM/lun.img
PORT=$(free_port)
log "filling a ${SIZE_MIB} MiB LUN file in /dev/shm"
dd if=/dev/urandom of="$LUNFILE" bs=1M count="$SIZE_MIB" status=none
TARGET_CRC=
# use_target yes|no: make sure iser-target runs with --mpa-crc $1 (restarts it if not).
use_target() {
  [[ $TARGET_CRC == "$1" ]] && return 0
  if [[ -n $ISER_TARGET_PID ]]; then
    iser_target_stop || { echo "iser-target exited with an error after SIGTERM" >&2; exit 1; }
  fi
  PORT=$(free_port)
  iser_target_start "$TARGET_BIN" "$WORK" "$PORT" "$IQN" "$LUNFILE" "${SIZE_MIB}M" \
    --transport any --log-level warning --mpa-crc "$1" --digests yes
  TARGET_CRC=$1
  log "iser-target pid $ISER_TARGET_PID on 127.0.0.1:$PORT (--transport any --mpa-crc $1)"
}
use_target yes

RESULTS=$WORK/results.txt
: >"$RESULTS"
# run LABEL TRANSPORT initiator-bench-args... -> appends "LABEL RESULT-line" to RESULTS.
# TRANSPORT tcp+dig is TCP with CRC32C header and data digests.
run() {
  local label=$1 tr=$2 asked=$2 out rc=0 digest=none
  shift 2
  if [[ $tr == tcp+dig ]]; then tr=tcp digest=crc32c; fi
  out=$("$IBENCH" --portal "127.0.0.1:$PORT" --target "$IQN" --lun 0 --seconds "$SECS" \
    --transport "$tr" --digest "$digest" --cpu-pid "$ISER_TARGET_PID" "$@" \
    2>"$WORK/ibench.err") || rc=$?
  local line
  line=$(grep '^RESULT ' <<<"$out" || true)
  if [[ $rc != 0 || -z $line ]]; then
    echo "initiator-bench failed (exit $rc): $tr $*" >&2
    cat "$WORK/ibench.err" >&2
    return 1
  fi
  echo "$label $asked $line" >>"$RESULTS"
  log "$(printf '%-26s %-5s %s' "$label" "$tr" "$([[ $digest == none ]] || echo +dig)")" \
    "$(grep -o -E '(iops|mbps|lat_mean_us|lat_p99_us)=[0-9.]+' <<<"$line" | tr '\n' ' ')"
}

# After every cell the target must go quiet: a loop spinning with nothing to do (as after
# iSER disconnects before 1811e82) burns the CPU the next cell measures with. Ticks of
# utime+stime in 0.25 s; the busy-poll window after the last I/O is 200 us.
target_ticks() { sed 's/.*) //' "/proc/$ISER_TARGET_PID/stat" | awk '{print $12 + $13}'; }
idle_check() {   # label
  local t0 t1 hz
  sleep 0.05
  t0=$(target_ticks)
  sleep 0.25
  t1=$(target_ticks)
  hz=$(getconf CLK_TCK)
  if (((t1 - t0) * 2 > hz / 4)); then   # over half of the 0.25 s
    NOTES+=("the target used $((t1 - t0)) of $((hz / 4)) CPU ticks while idle after $1")
    log "${NOTES[-1]}"
  fi
}

# Which transports work here: a 0.2 s probe each. One that does not is left out of the
# table and makes the run fail at the end (the other rows are still measured).
AVAIL=()
NOTES=()
for tr in $TRANSPORTS; do
  if out=$("$IBENCH" --portal "127.0.0.1:$PORT" --target "$IQN" --lun 0 --seconds 0.2 --qd 1 \
      --transport "$tr" 2>"$WORK/probe.err") && grep -q "^RESULT transport=$tr " <<<"$out"; then
    AVAIL+=("$tr")
  else
    why=$(head -1 "$WORK/probe.err")
    [[ -n $why ]] || why="the session got $(grep -o 'transport=[a-z]*' <<<"${out:-}" || true)"
    NOTES+=("$tr not measured: $why")
    log "${NOTES[-1]}"
  fi
done
[[ ${#AVAIL[@]} -gt 0 ]] || { echo "no transport works" >&2; exit 1; }

# Cells: "rw bs qd setting conns crc". setting: imm (ImmediateData=Yes, InitialR2T=No),
# r2t (ImmediateData=No, InitialR2T=Yes), or - for reads (run with the defaults, imm).
CELLS=()
if [[ $SMOKE == 1 ]]; then
  CELLS=("randread 4096 32 - 1 yes" "randwrite 4096 32 imm 1 yes" "randwrite 4096 32 r2t 1 yes"
         "write 131072 32 r2t 2 yes" "read 131072 32 - 2 yes" "read 131072 32 - 1 no")
else
  for s in 1 2; do  # connections per session
    for qd in 1 32 128; do
      [[ $s == 2 && $qd == 1 ]] && continue
      CELLS+=("randread 4096 $qd - $s yes" "randwrite 4096 $qd imm $s yes"
              "randwrite 4096 $qd r2t $s yes")
    done
    CELLS+=("read 131072 32 - $s yes" "write 131072 32 imm $s yes" "write 131072 32 r2t $s yes")
  done
  CELLS+=("randread 4096 32 - 1 no" "read 131072 32 - 1 no" "write 131072 32 imm 1 no"
          "write 131072 32 r2t 1 no")
fi
log "${#CELLS[@]} rows x ${#AVAIL[@]} transports x ${SECS} s x $ROUNDS rounds"
n=0
for ((round = 1; round <= ROUNDS; round++)); do
for cell in "${CELLS[@]}"; do
  read -r rw bs qd setting conns crc <<<"$cell"
  use_target "$crc"
  args=(--rw "$rw" --bs "$bs" --qd "$qd" --connections "$conns" --mpa-crc "$crc")
  case $setting in
    r2t) args+=(--immediate-data no --initial-r2t yes) ;;
    *) args+=(--immediate-data yes --initial-r2t no) ;;
  esac
  peers=("${AVAIL[@]}")
  # The digest peer only where MPA CRC is on (it is the equal-integrity TCP for those).
  if [[ $crc == yes && " ${AVAIL[*]} " == *" tcp "* ]]; then peers+=(tcp+dig); fi
  # Rotate the order from row to row so no transport always runs first.
  order=()
  for ((k = 0; k < ${#peers[@]}; k++)); do
    order+=("${peers[$(((k + n) % ${#peers[@]}))]}")
  done
  for tr in "${order[@]}"; do
    run "$rw:$bs:$qd:$setting:$conns:$crc:$round" "$tr" "${args[@]}"
    idle_check "$rw:$bs:$qd:$setting:$conns:$crc:$round $tr"
  done
  n=$((n + 1))
done
done

rc=0
iser_target_stop || rc=$?
[[ $rc == 0 ]] || { echo "iser-target exited with status $rc after SIGTERM" >&2; exit 1; }
[[ -z $KEEP ]] || cp "$RESULTS" "$KEEP"

python3 - "$RESULTS" "$SECS" "$SIZE_MIB" "$ROUNDS" "${NOTES[@]}" <<'PY'
import statistics, sys
path, secs, size_mib, rounds, notes = sys.argv[1:5] + [sys.argv[5:]]
runs = {}  # label -> transport -> round -> RESULT fields
order = []
for line in open(path):
    full, asked, _, *kv = line.split()
    label, rnd = full.rsplit(":", 1)
    d = dict(x.split("=", 1) for x in kv)
    d["asked"] = asked
    if label not in runs:
        runs[label] = {}
        order.append(label)
    runs[label].setdefault(asked, {})[rnd] = d
problems = []
for label, per in runs.items():
    rw, bs, qd, setting, conns, crc = label.split(":")
    for tr, d in ((tr, d) for tr, by_round in per.items() for d in by_round.values()):
        if int(d["errors"]) or not int(d["ios"]):
            problems.append(f"{label} {tr}: {d['ios']} I/Os, {d['errors']} errors")
        if d.get("connections") != conns:
            problems.append(f"{label} {tr}: the session had {d.get('connections')} "
                            f"connections, asked for {conns}")
        if d["transport"] != tr.split("+")[0]:
            problems.append(f"{label} {tr}: the session ran over {d['transport']}")
        want_digest = "crc32c" if tr == "tcp+dig" else "none"
        if d.get("digest") != want_digest:
            problems.append(f"{label} {tr}: negotiated digests {d.get('digest')}, "
                            f"asked for {want_digest}")
        want = {"r2t": ("no", "yes")}.get(setting, ("yes", "no"))
        if (d["immediate_data"], d["initial_r2t"]) != want:
            problems.append(f"{label} {tr}: negotiated ImmediateData={d['immediate_data']} "
                            f"InitialR2T={d['initial_r2t']}, asked for {want}")
        if float(d["peer_cpu_s"]) < 0:
            problems.append(f"{label} {tr}: no target CPU time")

name = {"randread": "4 KiB rand read", "randwrite": "4 KiB rand write",
        "read": "128 KiB seq read", "write": "128 KiB seq write"}
setting_name = {"imm": "Yes/No", "r2t": "No/Yes", "-": "-"}
def derived(d):
    b, el = int(d["bytes"]), float(d["seconds"])
    gb = b / 1e9 if b else float("nan")
    other = float(d["host_busy_s"]) - float(d["cpu_s"]) - float(d["peer_cpu_s"])
    return {"mbps": float(d["mbps"]), "iops": float(d["iops"]),
            "mean": float(d["lat_mean_us"]), "p99": float(d["lat_p99_us"]),
            "icpu": float(d["cpu_s"]) / gb, "tcpu": float(d["peer_cpu_s"]) / gb,
            "others": max(0.0, 100 * other / (el * int(d["ncpu"]))),
            "irq": 100 * float(d.get("host_irq_s", "nan")) / (el * int(d["ncpu"]))}
def med(values):
    return statistics.median(values) if values else float("nan")
print()
print(f"iSER (software iWARP) vs iSCSI/TCP, loopback, one iser-target, one {size_mib} MiB LUN "
      f"in /dev/shm, initiator-bench, {secs} s per cell" +
      (f", median of {rounds} rounds (each column on its own; iSER/TCP = median of the "
       f"per-round ratios)" if rounds != "1" else ""))
print()
print("| workload | QD | ImmData/InitR2T | conns | MPA CRC | transport | MB/s | IOPS | mean us | "
      "p99 us | init CPU s/GB | target CPU s/GB | iSER/TCP | iSER/TCP+dig | others |")
print("|---|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
others, irq = [], []
for label in order:
    rw, bs, qd, setting, conns, crc = label.split(":")
    per = runs[label]
    def ratio_to(rs, peer):
        if peer not in per:
            return ""
        base = {r: float(d["mbps"]) for r, d in per[peer].items()}
        rr = [x["mbps"] / base[r] for r, x in rs.items() if base.get(r)]
        return f"{med(rr):.2f}" if rr else ""
    for tr in ("iser", "tcp", "tcp+dig"):
        if tr not in per:
            continue
        rs = {r: derived(d) for r, d in per[tr].items()}
        m = {k: med([x[k] for x in rs.values()]) for k in next(iter(rs.values()))}
        others += [x["others"] for x in rs.values()]
        irq += [x["irq"] for x in rs.values()]
        is_iser = tr == "iser"
        print(f"| {name[rw]} | {qd} | {setting_name[setting]} | {conns} | "
              f"{(crc if is_iser else '-')} | "
              f"{ {'iser': 'iSER', 'tcp': 'TCP', 'tcp+dig': 'TCP+dig'}[tr] } | "
              f"{m['mbps']:,.1f} | {m['iops']:,.0f} | "
              f"{m['mean']:.1f} | {m['p99']:.1f} | {m['icpu']:.2f} | {m['tcpu']:.2f} | "
              f"{ratio_to(rs, 'tcp') if is_iser else ''} | "
              f"{ratio_to(rs, 'tcp+dig') if is_iser else ''} | {m['others']:.0f}% |")
print()
if others:
    print(f"others = CPU used by other processes during a cell, % of all CPUs: "
          f"median {med(others):.0f}%, max {max(others):.0f}%; irq+softirq time (not in any "
          f"column): median {med(irq):.0f}%, max {max(irq):.0f}%")
# A transport that was asked for and does not work is a failure (after the table, so
# the TCP numbers are still there); pass --transports tcp to measure TCP alone.
problems += notes
if problems:
    print()
    for p in problems:
        print(f"PROBLEM: {p}")
    sys.exit(1)
PY
