#!/usr/bin/env bash
# bench/bench_load.sh — a real `fedpress coordinator` under many clients
# (issue 14, "Load"): the quadratic workload (FedAvg), S = 100 sampled per
# round, N clients held by one bench/load_clients process (a thread per
# client running client/'s own code, generated keys), for every N in
# --clients and every d in --dims. Per (N, d) it prints the handshake rate
# (connect, handshake, admission and welcome, as the clients saw it), the
# mean round latency (the rounds' wall_ms in the store: sampling, broadcast
# to S clients, their uploads, aggregation) of the rounds without an
# evaluation, and apart the mean of those with one (every 3rd: the
# quadratic's global objective over all N·d coefficients), and the
# coordinator's RSS: once listening (before any client) and its peak
# (VmHWM, read just before it exits), which must not grow with N·d.
#
# Usage: bench/bench_load.sh [--clients "250 500 1000"] [--dims "10 10000"]
#        [--rounds R] [--sample S] [--keep DIR]
#   FEDPRESS=path/to/fedpress (default build/fedpress); load_clients is
#   looked for next to it (build/bench/load_clients).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FP=${FEDPRESS:-$ROOT/build/fedpress}
LOAD=${LOAD_CLIENTS:-$(dirname "$FP")/bench/load_clients}
. "$ROOT/tests/e2e_lib.sh" # wait_port
CLIENTS="250 500 1000" DIMS="10 10000" ROUNDS=6 SAMPLE=100 KEEP=
while [ $# -gt 0 ]; do
  case $1 in
    --clients) CLIENTS=$2; shift 2 ;;
    --dims) DIMS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --sample) SAMPLE=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    *) echo "usage: $0 [--clients LIST] [--dims LIST] [--rounds R] [--sample S] [--keep DIR]" >&2
       exit 2 ;;
  esac
done
[ -x "$LOAD" ] || { echo "bench_load: $LOAD not built (meson compile -C build)" >&2; exit 1; }
# every client is a socket and a loop (epoll, eventfd) in load_clients, and
# a socket in the coordinator
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ -n "$KEEP" ]; then T=$KEEP; mkdir -p "$T"; else T=$(mktemp -d /tmp/fp_bench_load_XXXXXX); fi
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  [ -n "$KEEP" ] || rm -rf "$T"
}
trap cleanup EXIT
die() { echo "bench_load: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1

echo "bench_load: $0 --clients '$CLIENTS' --dims '$DIMS' --rounds $ROUNDS --sample $SAMPLE"
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(nproc) cores; ulimit -n $(ulimit -n)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
CK=$("$FP" keygen --out "$T/coord.key") || die "keygen failed"

kb() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status" 2>/dev/null; }

printf "%6s %7s %12s %10s %12s %14s %14s %12s\n" N d "handshakes/s" "round ms" "eval rnd ms" \
  "RSS listen MB" "RSS peak MB" "8·N·d MB"
for d in $DIMS; do
  for n in $CLIENTS; do
    w="$T/n$n-d$d"
    mkdir -p "$w/state"
    "$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set data.clients="$n" --set data.dim="$d" \
      --set participation.sample="$SAMPLE" --set run.rounds="$ROUNDS" --set run.eval_every=3 \
      --set participation.deadline=300 --dry-run >"$w/run.ini" || die "scenario N=$n d=$d"
    "$LOAD" pub "$n" >"$w/clients.pub" || die "load_clients pub"
    "$FP" coordinator --scenario "$w/run.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
      --allow "$w/clients.pub" --store "$w/daemon.db" --ready "$w/port" --wait 600 --quiet \
      --max-pending-per-address 32 \
      >"$w/coord.out" 2>"$w/coord.err" &
    cpid=$!
    PIDS+=("$cpid")
    port=$(wait_port "$w/port" $cpid 60) ||
      die "the coordinator did not listen: $(tail -n 3 "$w/coord.err")"
    rss0=$(kb $cpid VmRSS)
    # the peak, read while the process still lives: VmHWM at the last
    # sample before it exits (the run's end takes a moment: the final
    # results to N clients)
    ( hwm=0; while kill -0 $cpid 2>/dev/null; do
        h=$(kb $cpid VmHWM); [ -n "$h" ] && hwm=$h; echo "$hwm" >"$w/hwm"; sleep 0.1; done ) &
    PIDS+=($!)
    # every load client comes from 127.0.0.1: the per-address cap of
    # handshakes in flight (default 8, which closes the oldest, and
    # load_clients does not reconnect) is raised to its window (32)
    "$LOAD" run "127.0.0.1:$port" "$CK" "$n" --window 32 --state "$w/state" >"$w/load.out" \
      2>"$w/load.err"
    lrc=$?
    wait $cpid
    crc=$?
    [ $lrc -eq 0 ] && [ $crc -eq 0 ] ||
      die "N=$n d=$d: load_clients $lrc, coordinator $crc: $(tail -n 3 "$w/load.err" "$w/coord.err")"
    hs=$(sed -n 's/.*: \([0-9]*\) handshakes\/s.*/\1/p' "$w/load.out")
    read -r rms ems < <("$FP" metrics 1 --store "$w/daemon.db" --format csv |
      awk -F, 'NR > 1 && $1 ~ /^[0-9]+$/ { if ($1 % 3) { s += $8; k++ } else { e += $8; j++ } }
        END { printf "%.1f %.1f\n", k ? s / k : 0, j ? e / j : 0 }')
    printf "%6s %7s %12s %10.1f %12.1f %14.1f %14.1f %12.1f\n" "$n" "$d" "$hs" "$rms" "$ems" \
      "$(echo "$rss0 / 1024" | bc -l)" "$(echo "$(cat "$w/hwm") / 1024" | bc -l)" \
      "$(echo "8 * $n * $d / 1048576" | bc -l)"
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
