#!/usr/bin/env bash
# End-to-end test of the daemons' liveness and reconnection (issue 14): real
# processes on 127.0.0.1, ports from --ready files, no sleep as
# synchronisation (the waits poll for a file, a log line or a store row).
#  - late: the coordinator starts AFTER its clients: they are refused,
#    retry with backoff and get in; the final model equals `fedpress sim`'s;
#    a client with --reconnect-for 1 gives up; the clients do not
#    reconnect once the run is complete;
#  - kill9: SCAFFOLD (client state c_i), a client killed with kill -9 at a
#    moment the test does not choose and started again with the same
#    --state: every round includes every client and the final model equals
#    `fedpress sim`'s;
#  - window: the same, the client killed right after its round-10 upload
#    was written and before it heard the result (the test-only
#    --test-die-after-upload): the coordinator includes it, the restarted
#    client commits its prepared state by the welcome, and the final model
#    equals `fedpress sim`'s (a client that kept its old c_i would diverge);
#  - slow: training longer than --dead-peer (the test-only
#    --test-slow-train): the heartbeats keep the client in; meanwhile a key
#    not in clients.pub and a wrong pinned server key end their clients
#    without a reconnection;
#  - silent: a client stopped (SIGSTOP) is closed at the dead-peer timeout,
#    named, not before; continued, it reconnects, rejoins and is included;
#  - stall: a peer that stops reading an 8 MB broadcast is closed at the
#    write-stall timeout, named, and the run completes without it;
#  - replace: a second process with a connected key (the first one stopped,
#    its connection open) replaces the session; the first, continued, is
#    told why and exits 1 without reconnecting; the second completes.
# Each asserts that the coordinator keeps serving (the run completes).
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
PY=/usr/bin/python3
PEER="$ROOT/tests/attack_peer.py"
T=$(mktemp -d /tmp/fp_e2e_live_XXXXXX)
PIDS=()
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
trap end_jobs EXIT
N=4
secs() { date +%s.%N; }

make_keys $N
"$FP" keygen --out "$T/intruder.key" >/dev/null

quad() { # quad OUT BASE [--set ...]: a 4-client scenario
  local out=$1 base=$2
  shift 2
  "$FP" sim "$ROOT/scenarios/$base" --set data.clients=$N --set participation.sample=$N \
    --set participation.deadline=10 "$@" --dry-run >"$T/$out"
}
quad fedavg.ini fedavg-quadratic.ini --set run.rounds=30
quad scaffold.ini scaffold-quadratic.ini --set run.rounds=200 --set run.eval_every=50
quad slow.ini fedavg-quadratic.ini --set run.rounds=3
quad part.ini fedavg-quadratic.ini --set run.rounds=20 --set participation.min_updates=3 \
  --set participation.wait_after_min=30
quad big.ini fedavg-quadratic.ini --set run.rounds=2 --set data.dim=2000000 \
  --set participation.min_updates=3 --set participation.wait_after_min=30
check "scenarios made" "[ -s '$T/scaffold.ini' ] && [ -s '$T/big.ini' ]"

# coord NAME INI LISTEN [ARGS]: a coordinator in $T/NAME; sets CPID, PORT
coord() {
  local d="$T/$1" ini=$2 rc
  LISTEN=$3
  shift 3
  coord_start "$d" "$ini" --wait 40 "$@"
  rc=$?
  LISTEN=
  return $rc
}
# client NAME I [ARGS]: client I in the background, its state in
# $T/NAME/stI, its pid in CL[I]
client() {
  local d="$T/$1"
  shift
  client_start "$d" "$@"
}
wait_for() { wait_log "$1" "$2"; } # wait_for FILE PATTERN: at most 30 s
# finish_run NAME: waits for the coordinator and clients 0..N-1; sets CRC
# (the coordinator's exit) and CCRC (0 if every client exited 0)
finish_run() {
  wait "$CPID"
  CRC=$?
  CCRC=0
  for i in $(seq 0 $((N - 1))); do wait "${CL[$i]}" || CCRC=1; done
}
sim_hash() { # sim_hash INI NAME: fedpress sim's final model hash
  "$FP" sim "$1" --store "$T/$2/sim.db" --threads 1 --quiet | sed -n 's/^model sha256 //p'
}
hash_of() { sed -n 's/^model sha256 //p' "$1"; }
# every round of NAME's run has N included clients
all_in() {
  local db="$T/$1/db"
  [ "$(q "$db" "select count(*) from client_rounds where status = 'included'")" = \
    "$(q "$db" "select $N * count(*) from rounds")" ] && [ "$(q "$db" 'select count(*) from rounds')" -gt 0 ]
}

# ---- late: the clients first, then the coordinator
# A free port: a coordinator on port 0 says which, and is stopped before
# any client comes.
if coord pre "$T/fedavg.ini" 127.0.0.1:0; then
  LPORT=$PORT
  kill -TERM "$CPID"
  wait "$CPID"
  mkdir -p "$T/late/gu"
  SECONDS=0
  timeout 20 "$FP" client --connect "127.0.0.1:$LPORT" --server-key "$CK" --key "$T/c0.key" \
    --state "$T/late/gu" --reconnect-for 1 >/dev/null 2>"$T/late/giveup.err"
  grc=$?
  check "late: with nothing listening, --reconnect-for 1 retries, then gives up (exit 1, said so)" \
    "[ $grc -eq 1 ] && [ $SECONDS -le 5 ] && grep -q 'cannot connect to 127.0.0.1:$LPORT: connection refused; connecting again in' '$T/late/giveup.err' && grep -q 'gave up reconnecting after [1-9] s (--reconnect-for)' '$T/late/giveup.err'"
  PORT=$LPORT
  for i in $(seq 0 $((N - 1))); do client late "$i"; done
  n=0
  for i in $(seq 0 $((N - 1))); do
    wait_for "$T/late/c$i.err" "connection refused; connecting again in" && n=$((n + 1))
  done
  check "late: the $N clients are refused and retry ($n)" "[ $n -eq $N ]"
  if coord late "$T/fedavg.ini" "127.0.0.1:$LPORT"; then
    finish_run late
    check "late: the coordinator started after its clients completes the run (exit 0), every client too" \
      "[ $CRC -eq 0 ] && [ $CCRC -eq 0 ] && all_in late"
    hs=$(sim_hash "$T/fedavg.ini" late)
    check "late: the final model equals fedpress sim's (${hs:0:16})" \
      "[ -n '$hs' ] && [ '$hs' = \"\$(hash_of '$T/late/coord.out')\" ]"
    replay_exact late 1 "$T/late/db"
    ended=0
    for i in $(seq 0 $((N - 1))); do
      tail -1 "$T/late/c$i.err" | grep -q 'run 1 complete: final model' && ended=$((ended + 1))
    done
    check "late: no client reconnects once the run is complete (its last line says so: $ended)" \
      "[ $ended -eq $N ]"
  else
    bad "late: the coordinator listens on port $LPORT again"
  fi
else
  bad "late: a coordinator listening"
fi

# ---- kill9: SCAFFOLD, a client killed at an unchosen moment and restarted
if coord kill9 "$T/scaffold.ini" 127.0.0.1:0; then
  for i in $(seq 0 $((N - 1))); do client kill9 "$i" --test-slow-train 10; done
  for _ in $(seq 600); do
    [ "$(q "$T/kill9/db" 'select count(*) from rounds')" -ge 30 ] 2>/dev/null && break
    sleep 0.05
  done
  kill -9 "${CL[2]}"
  wait "${CL[2]}" 2>/dev/null
  at=$(q "$T/kill9/db" 'select count(*) from rounds')
  client kill9 2 --test-slow-train 10
  finish_run kill9
  check "kill9: client 2 killed after round ~$at and started again: the run completes (exit 0), every client too" \
    "[ $CRC -eq 0 ] && [ $CCRC -eq 0 ] && [ \"$at\" -lt 200 ]"
  check "kill9: the restarted client read its state back" \
    "grep -q 'state of round [0-9]* restored from' '$T/kill9/c2.err'"
  check "kill9: every round included every client" "all_in kill9"
  hs=$(sim_hash "$T/scaffold.ini" kill9)
  check "kill9: the final model equals fedpress sim's (${hs:0:16})" \
    "[ -n '$hs' ] && [ '$hs' = \"\$(hash_of '$T/kill9/coord.out')\" ]"
  replay_exact kill9 1 "$T/kill9/db"
else
  bad "kill9: coordinator listening"
fi

# ---- window: killed between the coordinator's inclusion and its commit
if coord window "$T/scaffold.ini" 127.0.0.1:0; then
  for i in $(seq 0 $((N - 1))); do
    if [ "$i" = 2 ]; then client window 2 --test-die-after-upload 10; else client window "$i"; fi
  done
  wait "${CL[2]}" 2>/dev/null
  drc=$?
  client window 2
  finish_run window
  check "window: client 2 died of SIGKILL after its round-10 upload; restarted, the run completes (exit 0)" \
    "[ $drc -eq 137 ] && [ $CRC -eq 0 ] && [ $CCRC -eq 0 ]"
  check "window: the coordinator included round 10 of client 2" \
    "[ \"\$(q '$T/window/db' \"select status from client_rounds where round = 10 and client = 2\")\" = included ]"
  check "window: the restarted client found its state prepared for round 10 and committed it" \
    "grep -q 'a state prepared for round 10 found' '$T/window/c2.err' && grep -q 'the coordinator included round 10: the state prepared for it committed' '$T/window/c2.err'"
  check "window: every round included every client" "all_in window"
  hs=$(sim_hash "$T/scaffold.ini" window)
  check "window: the final model equals fedpress sim's (${hs:0:16})" \
    "[ -n '$hs' ] && [ '$hs' = \"\$(hash_of '$T/window/coord.out')\" ]"
  replay_exact window 1 "$T/window/db"
else
  bad "window: coordinator listening"
fi

# ---- slow: training (1.5 s) longer than the dead-peer timeout (1 s)
if coord slow "$T/slow.ini" 127.0.0.1:0 --dead-peer 1; then
  for i in $(seq 0 $((N - 1))); do client slow "$i" --test-slow-train 1500; done
  wait_for "$T/slow/coord.err" "4 of 4 connected"
  mkdir -p "$T/slow/x"
  timeout 20 "$FP" client --connect "127.0.0.1:$PORT" --server-key "$CK" \
    --key "$T/intruder.key" --state "$T/slow/x" >/dev/null 2>"$T/slow/intruder.err"
  check "slow: a key not in clients.pub: exit 1, told why, no reconnection" \
    "[ $? -eq 1 ] && grep -q 'not in the allow-list' '$T/slow/intruder.err' && ! grep -q 'connecting again' '$T/slow/intruder.err'"
  timeout 20 "$FP" client --connect "127.0.0.1:$PORT" --server-key "$(cut -d' ' -f2 "$T/clients.pub" | head -1)" \
    --key "$T/c0.key" --state "$T/slow/x" >/dev/null 2>"$T/slow/wrongpin.err"
  check "slow: a wrong pinned server key: exit 1, no reconnection" \
    "[ $? -eq 1 ] && grep -q 'is --server-key its public key' '$T/slow/wrongpin.err' && ! grep -q 'connecting again' '$T/slow/wrongpin.err'"
  finish_run slow
  check "slow: the run completes (exit 0) with every client in every round: the heartbeats kept them in" \
    "[ $CRC -eq 0 ] && [ $CCRC -eq 0 ] && all_in slow && ! grep -q 'dead-peer' '$T/slow/coord.err'"
else
  bad "slow: coordinator listening"
fi

# ---- silent: client 3 stopped; the others take 0.3 s a round
if coord silent "$T/part.ini" 127.0.0.1:0 --dead-peer 2; then
  for i in 0 1 2; do client silent "$i" --test-slow-train 300; done
  client silent 3
  wait_for "$T/silent/coord.err" "4 of 4 connected"
  kill -STOP "${CL[3]}"
  t0=$(secs)
  if wait_for "$T/silent/coord.err" "client 3 (key [0-9a-f]*, 127.0.0.1:[0-9]*): sent nothing for 2 s, not even a heartbeat (the dead-peer timeout, --dead-peer); connection closed"; then
    dt=$(echo "$(secs) - $t0" | bc)
    check "silent: the stopped client is closed at the dead-peer timeout, named ($dt s after the stop: its last heartbeat came up to 2/3 s before)" \
      "[ \$(echo '$dt >= 1.3 && $dt < 6' | bc) = 1 ]"
  else
    bad "silent: the stopped client is closed at the dead-peer timeout, named"
  fi
  kill -CONT "${CL[3]}"
  finish_run silent
  check "silent: the run completes (exit 0), every client too" "[ $CRC -eq 0 ] && [ $CCRC -eq 0 ]"
  check "silent: continued, client 3 reconnects, rejoins and is included in the last round" \
    "grep -q 'connecting again in' '$T/silent/c3.err' && grep -q 'client 3 .* admitted' '$T/silent/coord.err' && [ \"\$(q '$T/silent/db' \"select status from client_rounds where client = 3 and round = 20\")\" = included ]"
else
  bad "silent: coordinator listening"
fi

# ---- stall: id 3 is a peer that never reads (8 MB broadcasts)
if "$PY" -c 'import dissononce' 2>/dev/null; then
  if coord stall "$T/big.ini" 127.0.0.1:0 --write-stall 2; then
    for i in 0 1 2; do client stall "$i"; done
    timeout 40 "$PY" "$PEER" noread "$PORT" "$CK" "$T/c3.key" 30 >"$T/stall/atk.out" 2>&1 &
    PIDS+=($!)
    wait "$CPID"
    CRC=$?
    CCRC=0
    for i in 0 1 2; do wait "${CL[$i]}" || CCRC=1; done
    check "stall: the peer that stops reading is closed at the write-stall timeout, named" \
      "grep -q 'client 3 (key [0-9a-f]*, 127.0.0.1:[0-9]*): [0-9]* queued bytes made no progress for 2 s (the write-stall timeout, --write-stall: it does not read); connection closed' '$T/stall/coord.err'"
    check "stall: the coordinator keeps serving: the run completes without it (exit 0), the others too" \
      "[ $CRC -eq 0 ] && [ $CCRC -eq 0 ] && [ \"\$(q '$T/stall/db' \"select count(*) from client_rounds where client = 3 and status = 'included'\")\" = 0 ] && [ \"\$(q '$T/stall/db' 'select count(*) from rounds')\" = 2 ]"
  else
    bad "stall: coordinator listening"
  fi
else
  skip "stall: python3-dissononce is not installed (the peer that stops reading needs it)"
fi

# ---- replace: a second process with client 1's key
if coord replace "$T/part.ini" 127.0.0.1:0; then
  for i in $(seq 0 $((N - 1))); do client replace "$i" --test-slow-train 200; done
  wait_for "$T/replace/coord.err" "4 of 4 connected"
  kill -STOP "${CL[1]}"
  first=${CL[1]}
  mkdir -p "$T/replace/second"
  "$FP" client --connect "127.0.0.1:$PORT" --server-key "$CK" --key "$T/c1.key" \
    --state "$T/replace/second" >"$T/replace/second.out" 2>"$T/replace/second.err" &
  CL[1]=$!
  PIDS+=($!)
  wait_for "$T/replace/coord.err" "replaced by a new connection"
  kill -CONT "$first"
  wait "$first"
  frc=$?
  finish_run replace
  check "replace: the old session is closed, named, for the new connection with its key" \
    "grep -q 'client 1 (key [0-9a-f]*, 127.0.0.1:[0-9]*): replaced by a new connection with its key from 127.0.0.1:[0-9]*; the old connection is closed' '$T/replace/coord.err'"
  check "replace: the first process, continued, is told why and exits 1 without reconnecting" \
    "[ $frc -eq 1 ] && grep -q 'replaced by a new connection' '$T/replace/c1.err' && ! grep -q 'connecting again' '$T/replace/c1.err'"
  check "replace: the run completes (exit 0), the second process too, included in the last round" \
    "[ $CRC -eq 0 ] && [ $CCRC -eq 0 ] && grep -q 'run 1 complete' '$T/replace/second.out' && [ \"\$(q '$T/replace/db' \"select status from client_rounds where client = 1 and round = 20\")\" = included ]"
else
  bad "replace: coordinator listening"
fi

finish e2e_live
