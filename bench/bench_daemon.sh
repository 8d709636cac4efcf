#!/usr/bin/env bash
# bench/bench_daemon.sh — the daemons against the simulator on one machine,
# in the same run (issue 14, "Performance"): the paper's MLP FedAvg scenario
# (scenarios/paper/fedavg.ini) with S = N = 20, a coordinator and 20 client
# processes on 127.0.0.1, and `fedpress sim` of the same scenario, run
# alternately REPS times each. Prints the mean and median round time of
# each (the rounds' wall_ms as run/ stores it: from the round's sampling to
# just before its commit, the same span in both drivers; the clients'
# start and the first round's wait for them are outside it), the ratio
# daemon / sim (target <= 1.15) and whether every model SHA-256 is equal.
#
# Threads (a 2-core machine): the simulator runs with --threads $SIM_THREADS
# (default: the number of cores), i.e. it trains two clients at a time with
# one OpenBLAS thread each, as run/ sets it. The 20 clients are 20
# processes with OPENBLAS_NUM_THREADS=1 (the client sets OpenBLAS to one
# thread itself; the variable keeps OpenBLAS from starting a pool per
# process first), so both drivers keep every core busy with one training
# at a time per core and neither is oversubscribed by BLAS threads. The
# coordinator evaluates the test set on every core (the clients are idle
# then), as the simulator does. OPENBLAS_CORETYPE is left as the
# environment has it: every process makes the same kernel choice.
#
# Usage: bench/bench_daemon.sh [--rounds R] [--reps K] [--threads T] [--eval-every E]
#        [--keep DIR] [--only sim|daemon]
#   --only runs one driver (e.g. under perf record -a); --keep keeps the
#   stores and logs in DIR; --cpu also runs each driver once with 5 rounds
#   and prints the CPU time of one round (the difference with the R-round
#   runs over R - 5 rounds: set-up cancels), the coordinator's apart.
#   FEDPRESS=path/to/fedpress (default build/fedpress)
# Each line "others" is the average number of cores that processes other
# than this benchmark's kept busy meanwhile (/proc/stat minus our own CPU
# time): a ratio taken while others is well above 0 on 2 cores means little.
# "CPU s" is the CPU time (user + sys) of every process of that run, set-up
# included; two runs of different lengths (--rounds 5 and 45) give the CPU
# cost of one round by difference (docs/performance.md).
# CPU times come from the shell's `times` builtin (getrusage of the reaped
# children, to the millisecond) once a run has ended: nothing polls while
# the drivers run, so the benchmark costs neither driver any CPU. The
# coordinator runs in a subshell of its own that starts it and waits, so
# that subshell's `times` is the coordinator's CPU alone.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FP=${FEDPRESS:-$ROOT/build/fedpress}
ROUNDS=20 REPS=3 EVAL_EVERY=1 KEEP= ONLY="sim daemon" CPU=
SIM_THREADS=$(nproc)
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --threads) SIM_THREADS=$2; shift 2 ;;
    --eval-every) EVAL_EVERY=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --cpu) CPU=1; shift ;;
    *) echo "usage: $0 [--rounds R] [--reps K] [--threads T] [--eval-every E] [--keep DIR] [--only sim|daemon] [--cpu]" >&2
       exit 2 ;;
  esac
done
N=20
if [ -n "$KEEP" ]; then T=$KEEP; mkdir -p "$T"; else T=$(mktemp -d /tmp/fp_bench_daemon_XXXXXX); fi
cleanup() {
  # only live jobs: a pid already waited for may be another process's now
  local p
  for p in $(jobs -pr); do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  [ -n "$KEEP" ] || rm -rf "$T"
}
trap cleanup EXIT
die() { echo "bench_daemon: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1

echo "bench_daemon: $0 --rounds $ROUNDS --reps $REPS --threads $SIM_THREADS --eval-every $EVAL_EVERY"
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
echo "fedpress: $FP; $("$FP" version | tr '\n' ' ')"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
# the machine's limits, in the same run: FP32 FMA peak and memcpy
# (bench_train, section 1), ChaCha20-Poly1305 and memcpy on one core and the
# coordinator's broadcast and handshakes (bench_net)
BB=$(dirname "$FP")/bench
if [ -x "$BB/bench_train" ] && [ -x "$BB/bench_net" ]; then
  echo "machine limits:"
  "$BB/bench_train" --only 1 --quick 2>&1 | grep -E '^(FP32 FMA peak|memcpy|both, alternating)' |
    sed 's/^/  /'
  "$BB/bench_net" 100 2>&1 | grep -E '^(memcpy|chacha20poly1305_ietf encrypt|sha256|  handshake|  broadcast.*tune)' |
    sed 's/^ */  /'
else
  echo "machine limits: $BB/bench_train and bench_net not built"
fi

"$FP" sim "$ROOT/scenarios/paper/fedavg.ini" --set data.clients=$N --set participation.sample=$N \
  --set run.rounds="$ROUNDS" --set run.eval_every="$EVAL_EVERY" --set participation.deadline=600 \
  --dry-run >"$T/run.ini" || die "the scenario does not build"
sed "s/^rounds = .*/rounds = 5/" "$T/run.ini" >"$T/run5.ini"
CK=$("$FP" keygen --out "$T/coord.key") || die "keygen failed"
: >"$T/clients.pub"
for i in $(seq 0 $((N - 1))); do
  [ -s "$T/c$i.key" ] || "$FP" keygen --out "$T/c$i.key" >/dev/null
  echo "$i $("$FP" keygen --public "$T/c$i.key")" >>"$T/clients.pub"
done

# busy jiffies of the whole machine
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
HZ=$(getconf CLK_TCK)
t_now() { date +%s.%N; }
# "XmY.ZZZs" (as `times` prints it) -> milliseconds, in MS
tms() {
  local m=${1%%m*} r=${1#*m} f
  r=${r%s}
  f=${r#*.}000
  MS=$((10#$m * 60000 + 10#${r%.*} * 1000 + 10#${f:0:3}))
}
# CPU time (user + sys) in ms, in MS, of the reaped children of the shell
# whose `times` output is in file $1 (its second line)
times_ms() {
  local u s
  { read -r _ _ && read -r u s; } <"$1" || { MS=0; return; }
  tms "$u"
  local a=$MS
  tms "$s"
  MS=$((a + MS))
}
# our reaped children's CPU in ms, in MS: builtins only, no process started
ourcpu() {
  times >"$T/.times"
  times_ms "$T/.times"
}
# B0 W0 C: cores kept busy by other processes since busy() was B0 and the
# time W0, C ms of CPU being ours (ourcpu must run in this shell, never in
# a $(...) subshell: a subshell's `times` starts from zero)
others() {
  local b1 w1
  b1=$(busy) w1=$(t_now)
  awk -v b="$(($b1 - $1))" -v c="$3" -v w="$(echo "$w1 - $2" | bc -l)" -v hz="$HZ" \
    'BEGIN { o = (b / hz - c / 1e3) / w; if (o < 0) o = 0; printf "%.2f", o }'
}

# round stats from a store: "mean median first" of wall_ms (metrics csv
# column 8); mean and median over rounds 2 and on, since the daemon's first
# round also waits for the clients to build their shards after the welcome
round_ms() {
  "$FP" metrics 1 --store "$1" --format csv >"$1.csv"
  local first
  first=$(awk -F, '$1 == 1 { print $8 }' "$1.csv")
  awk -F, 'NR > 1 && $1 ~ /^[0-9]+$/ && $1 > 1 { print $8 }' "$1.csv" | sort -n |
    awk -v f="$first" '{ v[NR] = $1; s += $1 }
      END { if (NR) printf "%.1f %.1f %.0f\n", s / NR, v[int((NR + 1) / 2)], f }'
}

wait_port() {
  for _ in $(seq 1200); do
    [ -s "$1" ] && { cat "$1"; return 0; }
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

run_sim() { # DIR [INI]
  local d=$1 ini=${2:-$T/run.ini}
  mkdir -p "$d"
  "$FP" sim "$ini" --store "$d/sim.db" --threads "$SIM_THREADS" --quiet >"$d/sim.out" \
    2>"$d/sim.err" || die "sim failed: $(cat "$d/sim.err")"
}

run_daemon() { # DIR [INI]
  local d=$1 ini=${2:-$T/run.ini}
  mkdir -p "$d"
  # A subshell starts the coordinator and waits for it, then writes its
  # `times`: the coordinator's CPU (every thread), measured by the kernel
  # when it is reaped, with nothing watching it meanwhile. (A TERM from
  # cleanup kills the coordinator: a TERM would have it finish its round,
  # which waits for clients that are gone until the deadline.)
  (
    "$FP" coordinator --scenario "$ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
      --allow "$T/clients.pub" --store "$d/daemon.db" --ready "$d/port" --wait 120 \
      --quiet >"$d/coord.out" 2>"$d/coord.err" &
    c=$!
    trap 'kill -KILL $c 2>/dev/null; exit 143' TERM
    wait $c
    rc=$?
    times >"$d/coord.times"
    exit $rc
  ) &
  local cpid=$!
  local port
  port=$(wait_port "$d/port" "$cpid") || die "the coordinator did not listen: $(cat "$d/coord.err")"
  local cpids=()
  for i in $(seq 0 $((N - 1))); do
    mkdir -p "$d/st$i"
    "$FP" client --connect "127.0.0.1:$port" --server-key "$CK" --key "$T/c$i.key" \
      --state "$d/st$i" >"$d/c$i.out" 2>"$d/c$i.err" &
    cpids+=($!)
  done
  wait "$cpid" || die "the coordinator failed: $(tail -5 "$d/coord.err")"
  for p in "${cpids[@]}"; do wait "$p" || die "a client failed: $(cat "$d"/c*.err | tail -5)"; done
}

printf "%-4s %-7s %10s %10s %10s %8s %8s %s\n" rep driver "mean ms" "median ms" "round 1" "CPU s" \
  others "model sha256"
sums=$(mktemp -p "$T")
for k in $(seq 1 "$REPS"); do
  for drv in $ONLY; do
    d="$T/$drv$k"
    b0=$(busy) w0=$(t_now)
    ourcpu
    c0=$MS
    "run_$drv" "$d"
    ourcpu
    cpu=$((MS - c0))
    o=$(others "$b0" "$w0" "$cpu")
    if [ $drv = sim ]; then db=$d/sim.db out=$d/sim.out; else db=$d/daemon.db out=$d/coord.out; fi
    read -r mean med first < <(round_ms "$db")
    sha=$(sed -n 's/^model sha256 //p' "$out")
    printf "%-4s %-7s %10s %10s %10s %8s %8s %s\n" "$k" "$drv" "$mean" "$med" "$first" \
      "$(awk -v c="$cpu" 'BEGIN { printf "%.2f", c / 1e3 }')" "$o" "$sha"
    echo "$drv $mean $med $sha $k $o" >>"$sums"
    times_ms "$d/coord.times" 2>/dev/null
    echo "$drv $cpu $MS" >>"$sums.cpu"
  done
done
if [ -n "$CPU" ]; then
  for drv in $ONLY; do
    d="$T/${drv}5"
    ourcpu
    c0=$MS
    "run_$drv" "$d" "$T/run5.ini"
    ourcpu
    cpu=$((MS - c0))
    times_ms "$d/coord.times" 2>/dev/null
    echo "$drv $cpu $MS" >>"$sums.cpu5"
  done
  # CPU ms: every process of the run, and the coordinator's
  awk -v R="$ROUNDS" '
    FNR == NR { c5[$1] = $2; k5[$1] = $3; next }
    { n[$1]++; c[$1] += $2; k[$1] += $3 }
    END {
      for (d in n) { per[d] = (c[d] / n[d] - c5[d]) / (R - 5)
                     kper[d] = (k[d] / n[d] - k5[d]) / (R - 5) }
      printf "CPU per round (R = %d minus 5 rounds): sim %.1f ms; daemon %.1f ms (coordinator %.1f, 20 clients %.1f): daemon / sim = %.3f\n",
        R, per["sim"], per["daemon"], kper["daemon"], per["daemon"] - kper["daemon"], per["daemon"] / per["sim"]
    }' "$sums.cpu5" "$sums.cpu"
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
awk '
  { n[$1]++; m[$1] += $2; sha[$4]++; v[$1, $5] = $2; if ($6 > oth[$5]) oth[$5] = $6; reps[$5] = 1 }
  END {
    printf "mean of means: sim %.1f ms, daemon %.1f ms: daemon / sim = %.3f\n",
      m["sim"] / n["sim"], m["daemon"] / n["daemon"], (m["daemon"] / n["daemon"]) / (m["sim"] / n["sim"])
    q = ""
    for (k in reps) {
      if (("sim", k) in v && ("daemon", k) in v) {
        printf "rep %s: daemon / sim = %.3f (others up to %.2f)\n", k, v["daemon", k] / v["sim", k], oth[k]
        if (q == "" || oth[k] < oth[q]) q = k
      }
    }
    if (q != "")
      printf "quietest rep (%s, others up to %.2f): sim %.1f ms, daemon %.1f ms: daemon / sim = %.3f (target <= 1.15)\n",
        q, oth[q], v["sim", q], v["daemon", q], v["daemon", q] / v["sim", q]
    k = 0; for (s in sha) k++
    printf "model SHA-256: %s\n", (k == 1 && length(s) == 64) ? "all equal (" s ")" : "DIFFERENT"
    exit !(k == 1 && length(s) == 64)
  }' "$sums"
