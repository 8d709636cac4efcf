#!/usr/bin/env bash
# End-to-end: the daemons over damaged connections (issue 14, "Tests";
# `tc netem` is not available, so tests/faultproxy.c, an in-tree TCP proxy,
# does the damage). Real processes on 127.0.0.1, port 0 and ready files.
#  1. Four clients, min_updates = 2 (and wait_after_min = 15 s, so that a
#     round closes when every client answered or was settled): client 2 reaches the coordinator
#     through a proxy that flips one byte of its first upload, client 3
#     through one that cuts the connection in the middle of its first
#     broadcast. The channel refuses client 2's record (AEAD): round 1 has
#     client 2 'refused' with the channel's reason, client 3 'absent'; the
#     coordinator keeps serving clients 0 and 1 and completes the run.
#  2. Client 0 through a proxy that holds every chunk 50 ms (far below the
#     round deadline), and a peer that sends its handshake one byte a
#     second (tests/attack_peer.py slowhs, as e2e_attack.sh uses it, but
#     here while clients arrive): clients 0-2 are admitted while it is
#     pending, it is closed at the handshake deadline, then client 3 comes
#     and the run ends with exactly `fedpress sim`'s model.
# What e2e_attack.sh covers already (a slow handshake against an idle
# coordinator, garbage records from a Noise peer, silent connections) is
# not repeated.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
PROXY=${FP_BUILD_ROOT:?}/tests/faultproxy
PY=/usr/bin/python3
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
[ -x "$PROXY" ] || { echo "SKIP: $PROXY is not built"; exit 77; }
T=$(mktemp -d /tmp/fp_e2e_fault_XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
N=4
make_keys $N
"$FP" keygen --out "$T/peer.key" >/dev/null
# d = 4000: a 16 KB upload and broadcast, so the proxies' offsets below fall
# inside them (the handshake, report and welcome are all smaller)
SC="$ROOT/scenarios/fedavg-quadratic.ini"
"$FP" sim "$SC" --set data.clients=$N --set participation.sample=$N --set run.rounds=3 \
  --set run.eval_every=1 --set data.dim=4000 --set participation.deadline=20 \
  --set participation.min_updates=2 --set participation.wait_after_min=15 --dry-run >"$T/faults.ini"
"$FP" sim "$SC" --set data.clients=$N --set participation.sample=$N --set run.rounds=3 \
  --set run.eval_every=1 --set data.dim=4000 --set participation.deadline=20 \
  --dry-run >"$T/delay.ini"
check "scenarios made" "[ -s '$T/faults.ini' ] && [ -s '$T/delay.ini' ]"

# coord NAME INI: a coordinator in $T/NAME; sets CPID and PORT
coord() {
  mkdir -p "$T/$1"
  "$FP" coordinator --scenario "$2" --listen 127.0.0.1:0 --key "$T/coord.key" \
    --allow "$T/clients.pub" --store "$T/$1/db" --ready "$T/$1/port" --wait 30 \
    --handshake-deadline 2 >"$T/$1/coord.out" 2>"$T/$1/coord.err" &
  CPID=$!
  PIDS+=("$CPID")
  PORT=$(wait_port "$T/$1/port" "$CPID")
}
# proxy NAME TAG ARGS...: a fault proxy to the coordinator; sets PPORT
proxy() {
  local d="$T/$1" tag=$2
  shift 2
  "$PROXY" --to "$PORT" --ready "$d/proxy-$tag.port" "$@" 2>"$d/proxy-$tag.log" &
  local p=$!
  PIDS+=("$p")
  PPORT=$(wait_port "$d/proxy-$tag.port" "$p")
}
# client NAME I PORT: an honest client I in the background; sets LAST
client() {
  mkdir -p "$T/$1/st$2"
  local d=$1 i=$2 p=$3
  shift 3
  timeout 50 "$FP" client --connect "127.0.0.1:$p" --server-key "$CK" --key "$T/c$i.key" \
    --state "$T/$d/st$i" "$@" >"$T/$d/c$i.out" 2>"$T/$d/c$i.err" &
  LAST=$!
  PIDS+=("$LAST")
}
# status NAME ROUND CLIENT: "status,reason" of that client's row in the store
status() {
  "$FP" metrics 1 --store "$T/$1/db" --format csv --clients |
    awk -F, -v r="$2" -v c="$3" '$1 == r && $2 == c { print $8 "," $9 }'
}

# ---- 1. a corrupted byte, a cut connection
if coord faults "$T/faults.ini" && [ -n "$PORT" ]; then
  proxy faults corrupt --corrupt up:1000
  CORRUPT=$PPORT
  proxy faults cut --cut down:8000
  CUT=$PPORT
  client faults 0 "$PORT"; C0=$LAST
  client faults 1 "$PORT"; C1=$LAST
  # no reconnection for the damaged two: each new connection through its
  # proxy would be damaged again (tests/e2e_live.sh covers reconnection)
  client faults 2 "$CORRUPT" --reconnect-for 0; C2=$LAST
  client faults 3 "$CUT" --reconnect-for 0; C3=$LAST
  wait "$CPID"
  crc=$?
  wait "$C0"; r0=$?
  wait "$C1"; r1=$?
  wait "$C2"; r2=$?
  wait "$C3"; r3=$?
  check "faults: the proxies did their damage (a byte of client 2's upload flipped, client 3's broadcast cut)" \
    "grep -q 'up byte 1000 corrupted' '$T/faults/proxy-corrupt.log' && grep -q 'down cut after 8000 bytes' '$T/faults/proxy-cut.log'"
  check "faults: the coordinator completes the run (exit 0)" "[ $crc -eq 0 ]"
  [ $crc -eq 0 ] || tail -5 "$T/faults/coord.err"
  check "faults: clients 0 and 1 complete it (exit 0); 2 and 3 do not ($r2, $r3)" \
    "[ $r0 -eq 0 ] && [ $r1 -eq 0 ] && [ $r2 -eq 1 ] && [ $r3 -eq 1 ]"
  check "faults: the channel refused client 2's damaged record (logged with its reason)" \
    "grep -Eq 'client 2 \(key [0-9a-f]{16}, 127.0.0.1:[0-9]+\).*(authenticat|decrypt)' '$T/faults/coord.err'"
  s2=$(status faults 1 2)
  check "faults: round 1 has client 2 'refused' with the channel's reason ($s2)" \
    "echo '$s2' | grep -Eq '^refused,.*(authenticat|decrypt)'"
  s3=$(status faults 1 3)
  check "faults: round 1 has client 3 'absent' ($s3)" "echo '$s3' | grep -q '^absent,'"
  inc=$("$FP" metrics 1 --store "$T/faults/db" --format csv --clients | awk -F, '$8 == "included"' |
    cut -d, -f1,2 | tr '\n' ' ')
  check "faults: clients 0 and 1 are included in all 3 rounds, and nobody else ($inc)" \
    "[ '$inc' = '1,0 1,1 2,0 2,1 3,0 3,1 ' ]"
  check "faults: the run is 'completed' in the store" \
    "\"$FP\" runs --store '$T/faults/db' --format csv | tail -1 | grep -q ',completed'"
  # the partial round (2 refused, 3 absent) replays with its logged participation
  replay_exact faults 1 "$T/faults/db"
else
  bad "faults: coordinator listening"
fi

# ---- 2. a delayed client and a slowloris peer during the run: nothing changes
if coord delay "$T/delay.ini" && [ -n "$PORT" ]; then
  SLOW=
  if "$PY" -c 'import dissononce' 2>/dev/null; then
    "$PY" "$ROOT/tests/attack_peer.py" slowhs "$PORT" "$CK" "$T/peer.key" 20 \
      >"$T/delay/slow.out" 2>&1 &
    SLOW=$!
    PIDS+=("$SLOW")
  fi
  proxy delay slow --delay 50
  client delay 0 "$PPORT"
  CS=("$LAST")
  for i in 1 2; do client delay "$i" "$PORT"; CS+=("$LAST"); done
  # the last client only once the slow peer's deadline passed, so the run
  # is still waiting for clients when it does
  if [ -n "$SLOW" ]; then
    for _ in $(seq 400); do
      grep -q 'no admitted handshake before the handshake deadline' "$T/delay/coord.err" && break
      sleep 0.05
    done
    admitted=$(grep -c ') admitted (' "$T/delay/coord.err")
    check "slowloris: while a peer sends its handshake a byte a second, clients 0-2 are admitted ($admitted)"       "[ $admitted -eq 3 ]"
  fi
  client delay 3 "$PORT"
  CS+=("$LAST")
  wait "$CPID"
  crc=$?
  ccrc=0
  for p in "${CS[@]}"; do wait "$p" || ccrc=1; done
  check "delay: the coordinator and every client complete the run (exit 0)" \
    "[ $crc -eq 0 ] && [ $ccrc -eq 0 ]"
  check "delay: the proxy carried client 0's connection" \
    "grep -q 'conn 1: open' '$T/delay/proxy-slow.log'"
  "$FP" sim "$T/delay.ini" --store "$T/delay/sim.db" --quiet >"$T/delay/sim.out" 2>&1
  hs=$(sed -n 's/^model sha256 //p' "$T/delay/sim.out")
  hd=$(sed -n 's/^model sha256 //p' "$T/delay/coord.out")
  check "delay: 50 ms on every chunk of client 0: the model is fedpress sim's ($hs)" \
    "[ \${#hs} -eq 64 ] && [ '$hs' = '$hd' ]"
  replay_exact delay 1 "$T/delay/db"
  if [ -n "$SLOW" ]; then
    wait "$SLOW"
    check "slowloris during the run: the peer sending a byte a second is closed at the handshake deadline (2 s)" \
      "grep -Eq 'closed after [2-4]\.[0-9] s' '$T/delay/slow.out' && grep -q 'no admitted handshake before the handshake deadline' '$T/delay/coord.err'"
  else
    skip "slowloris: python3-dissononce is not installed (tests/attack_peer.py needs it)"
  fi
else
  bad "delay: coordinator listening"
fi
finish e2e_fault
