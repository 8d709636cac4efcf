#!/usr/bin/env bash
# End-to-end: a hostile peer against `fedpress coordinator` on 127.0.0.1
# (tests/attack_peer.py, a fedpress/1 client written with python3-dissononce).
# Three ids in clients.pub: clients 0 and 1 are honest `fedpress client`s,
# id 2 is the attacker's key. Checked (DESIGN.md: every length from the
# network capped, a peer stalls nothing but itself, no input crashes the
# coordinator, errors name the peer and the reason):
#  - unauthenticated: a connection that never speaks and one that sends its
#    handshake a byte a second are closed at --handshake-deadline; 70 silent
#    connections: as many as are over --max-pending are closed at once (the
#    oldest), the rest at the deadline; with 64 silent ones holding every
#    slot, the honest clients still get in and the run completes;
#  - a client killed (-9) after its admission: its key connects again;
#  - admitted and then hostile, in its round: a result declaring 2^62
#    bytes, for another round, naming another client id, a NaN loss, an
#    upload of NaNs, a duplicate upload, garbage instead of a record, half a
#    record then EOF, an error message with an empty payload: with
#    min_updates = 2 of 3, the run completes without client 2 (coordinator
#    and honest clients exit 0, both rounds committed, client 2's rows not
#    'included' and with a reason), and the coordinator names client 2 with
#    its key's fingerprint and address and the reason;
#  - a client that never reads a large broadcast: the coordinator still
#    exits soon after the round deadline (it used to wait for that peer to
#    go away before it could exit);
#  - a client that answers without reading: dropped at the write-queue cap;
#    with min_updates = S the round then fails after its retries, and the
#    honest clients print the coordinator's reason;
#  - the client against a server that accepts and never speaks: it exits 1
#    at --welcome-deadline.
# Every process is killed by the trap.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
PY=/usr/bin/python3
PEER="$ROOT/tests/attack_peer.py"
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
if ! "$PY" -c 'import dissononce' 2>/dev/null; then
  echo "SKIP: python3-dissononce is not installed (apt-get install python3-dissononce)"
  exit 77
fi
T=$(mktemp -d /tmp/fp_e2e_attack_XXXXXX)
PIDS=()
trap end_jobs EXIT

make_keys 3
FPR2=$(sed -n 's/^2 \(.\{16\}\).*/\1/p' "$T/clients.pub")
SC="$ROOT/scenarios/fedavg-quadratic.ini"
"$FP" sim "$SC" --set data.clients=3 --set participation.sample=3 --set run.rounds=2 \
  --dry-run >"$T/run.ini"
# Partial rounds: a round needs 2 of the 3, so a hostile client 2 costs
# only its own inclusion and the run goes on without it.
"$FP" sim "$SC" --set data.clients=3 --set participation.sample=3 --set run.rounds=2 \
  --set participation.deadline=4 --set participation.min_updates=2 \
  --set participation.wait_after_min=3 --dry-run >"$T/min2.ini"
# 2,000,000 parameters: an 8 MB broadcast, more than the socket buffers of a
# peer that does not read
"$FP" sim "$SC" --set data.clients=3 --set participation.sample=3 --set run.rounds=2 \
  --set data.dim=2000000 --dry-run >"$T/big.ini"
check "scenarios made" "[ -s '$T/run.ini' ] && [ -s '$T/big.ini' ]"

# coord NAME INI [ARGS]: starts a coordinator in $T/NAME; sets CPID, PORT
coord() {
  local d="$T/$1" ini=$2
  shift 2
  mkdir -p "$d"
  "$FP" coordinator --scenario "$ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
    --allow "$T/clients.pub" --store "$d/db" --ready "$d/port" --wait 30 --deadline 4 \
    --handshake-deadline 2 "$@" >"$d/coord.out" 2>"$d/coord.err" &
  CPID=$!
  PIDS+=("$CPID")
  PORT=
  for _ in $(seq 400); do
    [ -s "$d/port" ] && { PORT=$(cat "$d/port"); return 0; }
    kill -0 "$CPID" 2>/dev/null || break
    sleep 0.05
  done
  return 1
}
# client NAME I: an honest client I in the background
client() {
  mkdir -p "$T/$1/st$2"
  timeout 50 "$FP" client --connect "127.0.0.1:$PORT" --server-key "$CK" --key "$T/c$2.key" \
    --state "$T/$1/st$2" >"$T/$1/c$2.out" 2>"$T/$1/c$2.err" &
  PIDS+=($!)
}
# clog NAME: that run's coordinator log
clog() { echo "$T/$1/coord.err"; }
secs() { date +%s.%N; }
elapsed() { echo "$(secs) - $1" | bc; }

# ---- unauthenticated connections (all from 127.0.0.1: the per-address
# cap is lifted so that the total cap is what is tested here;
# tests/e2e_admin.sh tests the per-address one)
if coord unauth "$T/run.ini" --max-pending-per-address 1000; then
  "$PY" "$PEER" silent "$PORT" "$CK" "$T/c2.key" 20 >"$T/unauth/silent.out" 2>&1 &
  S1=$!
  PIDS+=("$S1")
  "$PY" "$PEER" slowhs "$PORT" "$CK" "$T/c2.key" 20 >"$T/unauth/slow.out" 2>&1 &
  S2=$!
  PIDS+=("$S2")
  wait "$S1" "$S2"
  "$PY" "$PEER" many "$PORT" "$CK" "$T/c2.key" 70 >"$T/unauth/many.out" 2>&1
  check "a silent connection is closed at the handshake deadline (2 s)" \
    "grep -Eq 'closed after (1\.[5-9]|2\.[0-9]|3\.[0-9]) s: EOF' '$T/unauth/silent.out'"
  check "a handshake sent a byte a second is cut at the deadline (after 2-3 bytes)" \
    "grep -Eq 'closed after [2-4]\.[0-9] s' '$T/unauth/slow.out'"
  check "the coordinator names why (handshake deadline), with the address" \
    "grep -q '127.0.0.1:[0-9]*: no admitted handshake before the handshake deadline' '$T/unauth/coord.err'"
  # 70 silent ones, 2 others still pending at most: 64 kept, the rest shut at once
  check "70 silent connections: the oldest ones over --max-pending (64) are closed at once" \
    "grep -Eq 'opened 70, closed within 0.5 s: [6-8]\$' '$T/unauth/many.out' && grep -q 'too many connections in their handshake: the oldest one is closed' '$T/unauth/coord.err'"
  check "... and the others at the handshake deadline" \
    "grep -Eq 'closed 70 of 70 after [1-3]\.[0-9] s' '$T/unauth/many.out'"
  # the same again, and this time the honest clients arrive while the
  # silent ones fill every slot: they are admitted all the same (the oldest
  # silent connection makes room; clients do not retry in this version)
  "$PY" "$PEER" many "$PORT" "$CK" "$T/c2.key" 70 >"$T/unauth/many2.out" 2>&1 &
  PIDS+=($!)
  sleep 0.3
  for i in 0 1 2; do client unauth "$i"; done
  wait "$CPID"
  check "with 70 silent connections open, the honest clients get in and the run completes (exit 0)" "[ $? -eq 0 ]"
else
  bad "unauth: coordinator listening"
fi

# ---- kill -9 of an admitted client before the first round: the key comes back
if coord kill9 "$T/run.ini"; then
  mkdir -p "$T/kill9/st2"
  # not under timeout(1): the signal must reach the client itself
  "$FP" client --connect "127.0.0.1:$PORT" --server-key "$CK" --key "$T/c2.key" \
    --state "$T/kill9/st2" >"$T/kill9/first.out" 2>"$T/kill9/first.err" &
  K=$!
  PIDS+=("$K")
  if wait_log "$(clog kill9)" "client 2 .*admitted"; then
    kill -9 "$K"
    wait "$K" 2>/dev/null
    check "kill -9 of client 2: the coordinator logs its disconnection" \
      "wait_log \"\$(clog kill9)\" 'client 2 (key $FPR2, 127.0.0.1:[0-9]*) disconnected'"
    for i in 0 1 2; do client kill9 "$i"; done
    wait "$CPID"
    check "client 2 started again is admitted and the run completes (exit 0)" "[ $? -eq 0 ]"
  else
    bad "kill9: client 2 admitted"
  fi
else
  bad "kill9: coordinator listening"
fi

# ---- admitted, then hostile in its round: refused, named, and the run goes
# on with the honest two (DESIGN.md: a peer can stall nothing but itself)
# attack MODE REASON-REGEX
attack() {
  local m=$1 why=$2
  if ! coord "$m" "$T/min2.ini"; then
    bad "$m: coordinator listening"
    return
  fi
  client "$m" 0
  client "$m" 1
  local cl=("${PIDS[-2]}" "${PIDS[-1]}")
  timeout 30 "$PY" "$PEER" "$m" "$PORT" "$CK" "$T/c2.key" 10 >"$T/$m/atk.out" 2>&1 &
  PIDS+=($!)
  local t0
  t0=$(secs)
  wait "$CPID"
  local rc=$?
  local dt
  dt=$(elapsed "$t0")
  wait "${cl[0]}"
  local rc0=$?
  wait "${cl[1]}"
  local rc1=$?
  check "$m: the run completes without client 2 (coordinator exit 0 in $dt s, honest clients exit 0)" \
    "[ $rc -eq 0 ] && [ $rc0 -eq 0 ] && [ $rc1 -eq 0 ] && [ \$(echo '$dt < 12' | bc) -eq 1 ]"
  check "$m: it names client 2 (fingerprint, address) and the reason" \
    "grep -Eq 'client 2 \\(key $FPR2, 127.0.0.1:[0-9]+\\).*$why|$why.*client 2' '$T/$m/coord.err'"
  local rounds bad2 inc01
  rounds=$("$FP" metrics 1 --store "$T/$m/db" --format csv 2>/dev/null | tail -n +2 | wc -l)
  bad2=$(sqlite3 "$T/$m/db" "select count(*) from client_rounds where run_id=1 and client=2 and status<>'included' and length(reason)>0" 2>/dev/null)
  inc01=$(sqlite3 "$T/$m/db" "select count(*) from client_rounds where run_id=1 and client<2 and status='included'" 2>/dev/null)
  check "$m: both rounds committed, the honest clients included in each, client 2 left out with a reason" \
    "[ '$rounds' -eq 2 ] && [ '$inc01' -eq 4 ] && [ '${bad2:-0}' -ge 1 ]"
}
attack hugelen 'result of 4611686018427387904 payload bytes, expected 8'
attack wronground 'result for round 2, expected round 1'
attack otherid 'result for client 3, expected client 2'
attack nanloss 'reported a training loss that is not finite'
attack nan 'malformed upload from client 2 in round 1|not finite'
# the duplicate is refused as unexpected: after the round ended (the next
# round waits for a result) or before (nothing waits for an upload), as the
# coordinator's hashing of the last uploads decides
attack dup 'a upload message (where a result was expected|from the client that nothing waits for)'
attack garbage 'record 1 from the client does not authenticate'
attack midmsg 'closed the connection in the middle of a record'
attack errempty 'sent an error: ; connection closed'

# ---- a client that never reads: the coordinator is not held by it
if coord noread "$T/big.ini"; then
  client noread 0
  client noread 1
  timeout 40 "$PY" "$PEER" noread "$PORT" "$CK" "$T/c2.key" 30 >"$T/noread/atk.out" 2>&1 &
  PIDS+=($!)
  t0=$(secs)
  wait "$CPID"
  rc=$?
  dt=$(elapsed "$t0")
  # deadline 4 s + at most the handshake deadline (2 s) to drain its last
  # messages; the peer itself holds on for 30 s
  check "noread: the coordinator fails the round at its deadline and exits (exit 1, $dt s < 12)" \
    "[ $rc -eq 1 ] && [ \$(echo '$dt < 12' | bc) -eq 1 ]"
  check "noread: it names the client that does not read" \
    "grep -q 'client 2 (key $FPR2, 127.0.0.1:[0-9]*): it did not read its last messages in time' '$T/noread/coord.err'"
else
  bad "noread: coordinator listening"
fi

# ---- a client that answers every round without reading its broadcasts:
# the coordinator's queue for it is capped (2 broadcasts + 64 KiB), then it
# is dropped, named; the rounds committed before stay
"$FP" sim "$SC" --set data.clients=3 --set participation.sample=3 --set run.rounds=6 \
  --set data.dim=2000000 --dry-run >"$T/big6.ini"
if coord blind "$T/big6.ini"; then
  client blind 0
  client blind 1
  CL=("${PIDS[-2]}" "${PIDS[-1]}")
  timeout 40 "$PY" "$PEER" blind:8000000:6 "$PORT" "$CK" "$T/c2.key" 10 >"$T/blind/atk.out" 2>&1 &
  PIDS+=($!)
  wait "$CPID"
  rc=$?
  wait "${CL[@]}"
  n=$("$FP" metrics 1 --store "$T/blind/db" --format csv 2>/dev/null | tail -n +2 | wc -l)
  check "blind: the write-queue cap drops the client that does not read (exit 1, named)" \
    "[ $rc -eq 1 ] && grep -q 'client 2 (key $FPR2, 127.0.0.1:[0-9]*): too many bytes waiting to be written' '$T/blind/coord.err'"
  check "blind: the rounds before it ($n) stay committed" "[ '$n' -ge 1 ] && [ '$n' -lt 6 ]"
  # the coordinator closes while the honest clients' uploads are on their
  # way: they must still read and print its reason, not "broken pipe"
  check "blind: both honest clients print the coordinator's reason" \
    "grep -q 'refused or ended: .*not answering: 2 (absent' '$T/blind/c0.err' && grep -q 'refused or ended: .*not answering: 2 (absent' '$T/blind/c1.err'"
else
  bad "blind: coordinator listening"
fi

# ---- the client against a server that accepts and never speaks: it gives
# up at --welcome-deadline (it used to wait forever)
"$PY" -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
c, _ = s.accept(); time.sleep(30)
' "$T/mute.port" &
PIDS+=($!)
for _ in $(seq 200); do [ -s "$T/mute.port" ] && break; sleep 0.05; done
mkdir -p "$T/mute"
t0=$(secs)
timeout 15 "$FP" client --connect "127.0.0.1:$(cat "$T/mute.port")" --server-key "$CK" \
  --key "$T/c0.key" --state "$T/mute" --welcome-deadline 2 >/dev/null 2>"$T/mute.err"
rc=$?
dt=$(elapsed "$t0")
check "a mute server: the client exits 1 at its welcome deadline (2 s; took $dt s)" \
  "[ $rc -eq 1 ] && [ \$(echo '$dt < 5' | bc) -eq 1 ] && grep -q 'no handshake and welcome within 2 s' '$T/mute.err'"

# With FEDPRESS a -Db_sanitize=address,undefined build, every attack above
# ran under ASan/UBSan: none may have reported anything.
check "no sanitizer report in any coordinator's or client's log" \
  "! grep -rEl 'runtime error|Sanitizer' '$T' --include='*.err'"

finish e2e_attack
