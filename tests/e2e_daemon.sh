#!/usr/bin/env bash
# End-to-end test of the daemons (issue 14, first slice): a coordinator and
# 4 clients as real processes on 127.0.0.1 (port 0, the port read from the
# coordinator's --ready file) run a scenario over the Noise channel, and the
# coordinator's store must equal `fedpress sim` of the same scenario: the
# final model's SHA-256, every round's metrics (wall time aside) and every
# upload's SHA-256 in client_rounds. Four algorithms: FedAvg (no client
# state), SCAFFOLD (c_i) and FedEF with top-k (e_i, compressed uplink) on
# the quadratic, SCAFCOM with top-k (w_i) on an MLP whose broadcast spans
# several records. A second connection with a connected key replaces the
# first session (whose process is told why and exits 1). A
# client whose key is not in clients.pub is refused (one error record; the
# coordinator logs its key's fingerprint and address) and the run goes on;
# a client pinning the wrong coordinator key fails its handshake; a missing
# client fails the run with a message naming the wait. Every process is
# killed by the trap, whatever happens.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_daemon_XXXXXX)
PIDS=()
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
trap end_jobs EXIT
N=4

# keys: the coordinator's, one per client (ids 0..3), and an intruder's
make_keys $N
sed -i '1i # id public-key' "$T/clients.pub" # a comment line, which the coordinator skips
INTRUDER=$("$FP" keygen --out "$T/intruder.key")
check "keys made (coordinator, $N clients, intruder)" \
  "[ \${#CK} -eq 64 ] && [ \${#INTRUDER} -eq 64 ] && [ \$(grep -c '^[0-9]' '$T/clients.pub') -eq $N ]"

# run NAME SCENARIO: coordinator + N clients; sim of the same scenario; compare.
run_pair() {
  local name=$1 ini=$2 d="$T/$1"
  mkdir -p "$d"
  timeout 60 "$FP" coordinator --scenario "$ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
    --allow "$T/clients.pub" --store "$d/daemon.db" --ready "$d/port" --deadline 30 --wait 30 \
    >"$d/coord.out" 2>"$d/coord.err" &
  local cpid=$!
  PIDS+=("$cpid")
  local port
  if ! port=$(wait_port "$d/port" "$cpid"); then
    bad "$name: coordinator listening"
    cat "$d/coord.err"
    return
  fi
  if [ "$name" = fedavg ]; then
    # not in the allow-list: refused, and the run goes on without it
    mkdir -p "$d/sti"
    timeout 60 "$FP" client --connect "127.0.0.1:$port" --server-key "$CK" \
      --key "$T/intruder.key" --state "$d/sti" >"$d/intruder.out" 2>"$d/intruder.err"
    check "$name: a key not in clients.pub is refused (exit 1, told why)" \
      "[ $? -eq 1 ] && grep -q 'not in the allow-list' '$d/intruder.err'"
    check "$name: the coordinator logs the refused key's fingerprint and address" \
      "grep -q \"refused key ${INTRUDER:0:16} (127.0.0.1:[0-9]*): this key is not in the allow-list\" '$d/coord.err'"
    # pinning another key than the coordinator's: the handshake fails
    timeout 60 "$FP" client --connect "127.0.0.1:$port" --server-key "$INTRUDER" \
      --key "$T/c0.key" --state "$d/sti" >/dev/null 2>"$d/wrongpin.err"
    check "$name: a client pinning the wrong server key fails (exit 1)" \
      "[ $? -eq 1 ] && grep -q 'is --server-key its public key' '$d/wrongpin.err'"
  fi
  local cpids=()
  for i in $(seq 0 $((N - 1))); do
    mkdir -p "$d/st$i"
    if [ "$name" = fedavg ] && [ "$i" = 0 ]; then
      # one session per key: a second connection with client 0's key, once
      # client 0 is admitted, replaces the first session (a reconnecting
      # client's; before issue 14 slice 3 it was refused): the first
      # process is told why and exits 1 without reconnecting, the second
      # takes part as client 0 to the end
      timeout 60 "$FP" client --connect "127.0.0.1:$port" --server-key "$CK" --key "$T/c0.key" \
        --state "$d/sti" >/dev/null 2>"$d/first.err" &
      local first=$!
      PIDS+=($!)
      for _ in $(seq 200); do grep -q "client 0 .*admitted" "$d/coord.err" && break; sleep 0.05; done
    fi
    timeout 60 "$FP" client --connect "127.0.0.1:$port" --server-key "$CK" --key "$T/c$i.key" \
      --state "$d/st$i" >"$d/c$i.out" 2>"$d/c$i.err" &
    cpids+=($!)
    PIDS+=($!)
    if [ "$name" = fedavg ] && [ "$i" = 0 ]; then
      wait "$first"
      check "$name: a second connection with a connected key replaces the first, which is told why (exit 1, no reconnection)" \
        "[ $? -eq 1 ] && grep -q 'replaced by a new connection with its key' '$d/first.err' && ! grep -q 'connecting again' '$d/first.err' && grep -q 'client 0 (key [0-9a-f]*, 127.0.0.1:[0-9]*): replaced by a new connection with its key from 127.0.0.1:[0-9]*; the old connection is closed' '$d/coord.err'"
    fi
  done
  wait "$cpid"
  local crc=$?
  local ccrc=0
  for p in "${cpids[@]}"; do wait "$p" || ccrc=1; done
  check "$name: the coordinator completes the run (exit 0)" "[ $crc -eq 0 ]"
  [ $crc -eq 0 ] || cat "$d/coord.err"
  check "$name: every client exits 0" "[ $ccrc -eq 0 ]"
  [ $ccrc -eq 0 ] || cat "$d"/c*.err
  "$FP" sim "$ini" --store "$d/sim.db" --threads 1 --quiet >"$d/sim.out" 2>"$d/sim.err"
  local hs hd
  hs=$(sed -n 's/^model sha256 //p' "$d/sim.out")
  hd=$(sed -n 's/^model sha256 //p' "$d/coord.out")
  check "$name: the final model's SHA-256 equals fedpress sim's" \
    "[ \${#hs} -eq 64 ] && [ '$hs' = '$hd' ]"
  local same=1
  for i in $(seq 0 $((N - 1))); do
    [ "$(sed -n 's/^model sha256 //p' "$d/c$i.out")" = "$hs" ] || same=0
  done
  check "$name: every client was told that model's SHA-256" "[ \${#hs} -eq 64 ] && [ $same -eq 1 ]"
  # every round's metrics, the wall time (column 8) aside
  "$FP" metrics 1 --store "$d/sim.db" --format csv | cut -d, -f1-7 >"$d/sim.rounds"
  "$FP" metrics 1 --store "$d/daemon.db" --format csv | cut -d, -f1-7 >"$d/daemon.rounds"
  local rounds
  rounds=$(grep -c '^[0-9]' "$d/sim.rounds")
  check "$name: every round's metrics equal the simulator's ($rounds rounds)" \
    "[ $rounds -ge 3 ] && cmp -s '$d/sim.rounds' '$d/daemon.rounds'"
  "$FP" metrics 1 --store "$d/sim.db" --format csv --clients >"$d/sim.clients"
  "$FP" metrics 1 --store "$d/daemon.db" --format csv --clients >"$d/daemon.clients"
  cut -d, -f1,2,7 "$d/sim.clients" >"$d/sim.sha"
  cut -d, -f1,2,7 "$d/daemon.clients" >"$d/daemon.sha"
  check "$name: every upload's SHA-256 in client_rounds equals the simulator's" \
    "[ \$(grep -cE ',[0-9a-f]{64}$' '$d/sim.sha') -ge 9 ] && cmp -s '$d/sim.sha' '$d/daemon.sha'"
  check "$name: every client round (loss, bytes, examples) equals the simulator's" \
    "cmp -s '$d/sim.clients' '$d/daemon.clients'"
  check "$name: the run is 'completed' in the coordinator's store" \
    "\"$FP\" runs --store '$d/daemon.db' --format csv | tail -1 | grep -q ',completed'"
}

scenario() { # NAME BASE --set ... : the canonical text of a small variant
  local name=$1 base=$2
  shift 2
  "$FP" sim "$ROOT/scenarios/$base" --set run.rounds=5 --set run.eval_every=2 \
    --set data.clients=$N --set participation.sample=3 "$@" --dry-run >"$T/$name.ini"
}
scenario fedavg fedavg-quadratic.ini
scenario scaffold scaffold-quadratic.ini
scenario fedef fedavg-quadratic.ini --set algorithm.name=fedef --set compressor.name=topk \
  --set compressor.ratio=0.3
# an MLP on synthetic data: d = 14,210, so x and c (113,680 bytes) span records
scenario scafcom scaffold-synthetic.ini --set run.rounds=3 --set model.kind=mlp \
  --set model.hidden=200 --set algorithm.name=scafcom --set algorithm.local_steps=5 \
  --set compressor.name=topk --set compressor.ratio=0.1
run_pair fedavg "$T/fedavg.ini"
run_pair scaffold "$T/scaffold.ini"
check "scaffold: each client that was included keeps its c_i under --state (written whole)" \
  "[ \$(ls '$T'/scaffold/st*/client-*.state 2>/dev/null | wc -l) -ge 3 ] && ! ls '$T'/scaffold/st*/*.tmp >/dev/null 2>&1"
run_pair fedef "$T/fedef.ini"
check "fedef: each client that was included keeps its e_i under --state" \
  "[ \$(ls '$T'/fedef/st*/client-*.state 2>/dev/null | wc -l) -ge 3 ]"
run_pair scafcom "$T/scafcom.ini"

# clients.pub must give ids 0..N-1 each once: a gap is named with its line
printf '0 %s\n2 %s\n' "$CK" "$INTRUDER" >"$T/gap.pub"
"$FP" coordinator --scenario "$T/fedavg.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
  --allow "$T/gap.pub" --store "$T/gap.db" >/dev/null 2>"$T/gap.err"
check "an allow-list with a gap in its ids is refused, naming the file and line" \
  "[ $? -eq 2 ] && grep -q 'gap.pub:2: client id 2, but the file lists 2 clients' '$T/gap.err'"

# Caps and timers: with --max-pending 1, a silent connection holds the one
# unauthenticated place, so a second is closed at once; the silent one is
# closed at its handshake deadline; garbage instead of a handshake is
# closed; then the 4 clients run the scenario to the simulator's model.
d="$T/caps"
mkdir -p "$d"
timeout 60 "$FP" coordinator --scenario "$T/fedavg.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
  --allow "$T/clients.pub" --store "$d/daemon.db" --ready "$d/port" --max-pending 1 \
  --handshake-deadline 1 --deadline 30 >"$d/coord.out" 2>"$d/coord.err" &
cpid=$!
PIDS+=("$cpid")
if port=$(wait_port "$d/port" "$cpid"); then
  exec 3<>"/dev/tcp/127.0.0.1/$port"   # silent: holds the one pending place
  exec 4<>"/dev/tcp/127.0.0.1/$port"   # over the cap
  timeout 5 cat <&4 >/dev/null
  check "caps: a connection over --max-pending is closed at once, and logged" \
    "[ $? -eq 0 ] && grep -q 'too many connections in their handshake' '$d/coord.err'"
  exec 4>&-
  SECONDS=0
  timeout 10 cat <&3 >/dev/null
  rc=$?
  took=$SECONDS
  check "caps: a silent connection is closed at its handshake deadline (1 s; took ${took} s)" \
    "[ $rc -eq 0 ] && [ $took -le 3 ] && grep -q 'no admitted handshake before the handshake deadline' '$d/coord.err'"
  exec 3>&-
  exec 5<>"/dev/tcp/127.0.0.1/$port"
  printf 'GET / HTTP/1.0\r\n\r\n' >&5
  timeout 5 cat <&5 >/dev/null
  check "caps: garbage instead of a handshake is closed and logged" \
    "[ $? -eq 0 ] && grep -q 'not a fedpress/1 client' '$d/coord.err'"
  exec 5>&-
  cpids=()
  for i in $(seq 0 $((N - 1))); do
    mkdir -p "$d/st$i"
    timeout 60 "$FP" client --connect "127.0.0.1:$port" --server-key "$CK" --key "$T/c$i.key" \
      --state "$d/st$i" >"$d/c$i.out" 2>"$d/c$i.err" &
    cpids+=($!)
    PIDS+=($!)
    # one at a time: --max-pending 1 would refuse a client in its handshake
    # while another is in its own (what the cap is for)
    for _ in $(seq 200); do grep -q "^fedpress coordinator: client $i .*admitted" "$d/coord.err" && break; sleep 0.05; done
  done
  wait "$cpid"
  crc=$?
  for p in "${cpids[@]}"; do wait "$p"; done
  hs=$(sed -n 's/^model sha256 //p' "$T/fedavg/sim.out")
  check "caps: after all that the coordinator still serves the run to the simulator's model" \
    "[ $crc -eq 0 ] && [ \${#hs} -eq 64 ] && grep -qx \"model sha256 $hs\" '$d/coord.out'"
else
  bad "caps: coordinator listening"
fi

# A client that never comes: this version fails the run, saying so.
d="$T/missing"
mkdir -p "$d/st0"
timeout 60 "$FP" coordinator --scenario "$T/fedavg.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
  --allow "$T/clients.pub" --store "$d/daemon.db" --ready "$d/port" --wait 1 --deadline 30 \
  >"$d/coord.out" 2>"$d/coord.err" &
cpid=$!
PIDS+=("$cpid")
if port=$(wait_port "$d/port" "$cpid"); then
  timeout 60 "$FP" client --connect "127.0.0.1:$port" --server-key "$CK" --key "$T/c0.key" \
    --state "$d/st0" >"$d/c0.out" 2>"$d/c0.err" &
  PIDS+=($!)
  wait "$cpid"
  crc=$?
  wait $!
  c0rc=$?
  check "missing clients: the coordinator fails the run (exit 1) and says how many came" \
    "[ $crc -eq 1 ] && grep -q 'only 1 of the 4 clients' '$d/coord.err'"
  check "missing clients: the connected client is told and exits 1" \
    "[ $c0rc -eq 1 ] && grep -q 'only 1 of the 4 clients' '$d/c0.err'"
  check "missing clients: the run is 'failed' in the store" \
    "\"$FP\" runs --store '$d/daemon.db' --format csv | tail -1 | grep -q ',failed'"
else
  bad "missing clients: coordinator listening"
fi

# The round deadline: a client that stops answering (SIGSTOP) mid-run; the
# round's deadline (1 s) passes, and since the scenario sets no min_updates
# (every sampled client) the round is tried twice more, then the run fails
# naming it (partial rounds: tests/e2e_partial.sh).
d="$T/deadline"
mkdir -p "$d"
"$FP" sim "$T/fedavg.ini" --set run.rounds=1000000 --set run.eval_every=100000 --dry-run >"$d/long.ini"
timeout 60 "$FP" coordinator --scenario "$d/long.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
  --allow "$T/clients.pub" --store "$d/daemon.db" --ready "$d/port" --deadline 1 --quiet \
  >"$d/coord.out" 2>"$d/coord.err" &
cpid=$!
PIDS+=("$cpid")
if port=$(wait_port "$d/port" "$cpid"); then
  cpids=()
  for i in $(seq 0 $((N - 1))); do
    mkdir -p "$d/st$i"
    timeout 60 "$FP" client --connect "127.0.0.1:$port" --server-key "$CK" --key "$T/c$i.key" \
      --state "$d/st$i" >"$d/c$i.out" 2>"$d/c$i.err" &
    cpids+=($!)
    PIDS+=($!)
  done
  for _ in $(seq 200); do grep -q "4 of 4 connected" "$d/coord.err" && break; sleep 0.05; done
  stopped=$(pgrep -P "${cpids[2]}") # the client itself, not its timeout(1)
  kill -STOP $stopped
  SECONDS=0
  wait "$cpid"
  crc=$?
  took=$SECONDS
  kill -CONT $stopped
  check "deadline: a client that stops answering fails the run after the deadline and 2 retries without it (took ${took} s), naming it" \
    "[ $crc -eq 1 ] && [ $took -ge 1 ] && [ $took -le 5 ] && grep -q 'only 2 of the 3 uploads it needs (\[participation\] min_updates) arrived, in the last of 3 attempts; not answering: 2 (absent' '$d/coord.err'"
  for p in "${cpids[@]}"; do wait "$p"; done
  check "deadline: the other clients are told why and exit 1" \
    "grep -q 'uploads it needs' '$d/c0.err' && grep -q 'uploads it needs' '$d/c1.err'"
else
  bad "deadline: coordinator listening"
fi

finish e2e_daemon
