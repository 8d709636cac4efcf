#!/usr/bin/env bash
# End-to-end checks from the second review of the daemons (issue 14):
# 1. The first round when not every client comes: with 3 of 4 clients
#    connected at --wait (min_updates 2), the first round starts; the
#    sample is the simulator's stream (the daemon's sampled (round, client)
#    pairs equal fedpress sim's), client 3 is 'absent' (not connected when
#    sampled) from every round it is sampled in, and the run replays
#    exactly. With fewer than min_updates connected at --wait the run
#    fails, saying how many came and what a round needs.
# 2. --resume-or-start picks the newest run of the scenario: with run 1
#    completed and run 2 of the same scenario started without the flag and
#    killed (-9) while it waited for its clients, the flag continues run 2
#    to its end (and the replay of run 2 is exact), instead of saying run 1
#    is completed and leaving run 2 dead.
# 3. A damaged client state is refused, never trained on: SCAFFOLD stopped
#    with SIGINT (every client told, its c_i committed under --state), then
#    one byte of a vector flipped in client 0's state file (the value stays
#    finite: the algorithm's own checks pass it) and client 1's cut short;
#    restarted, both exit 1 naming their file, and never connect.
# 4. The per-address cap over IPv6 counts a /64, not one address (a host
#    picks a new source address in its /64 per connection): in a network
#    namespace (root; skipped otherwise), 30 silent connections from 30
#    addresses of one /64 leave 8 open (--max-pending-per-address 8 of
#    --max-pending 16), and do not close an honest handshake from another
#    /64 opened before them (the total cap alone would close it, the oldest).
# 5. A peer holding a key that answers its broadcast with heartbeats in a
#    tight loop instead of an upload (tests/attack_peer.py hbflood) holds no
#    round: it is 'late' in its first round, never included, and the others
#    complete the run, which replays exactly.
# 6. One client process per key and --state: a second `fedpress client`
#    with client 1's key and state directory, started while the first runs,
#    exits 1 before connecting, naming the first's pid; the first is never
#    replaced and stays in every round.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_rev2_XXXXXX)
PIDS=()
NS=
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
trap '[ -z "$NS" ] || ip netns del "$NS" 2>/dev/null; end_jobs' EXIT
N=4
make_keys $N
"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set data.clients=$N --set participation.sample=3 \
  --set participation.min_updates=2 --set participation.wait_after_min=20 --set participation.deadline=20 --set run.rounds=8 \
  --dry-run >"$T/part.ini"

# ---- 1. the first round at --wait with 3 of 4 clients
d="$T/first"
if coord_start "$d" "$T/part.ini" --wait 6; then
  for i in 0 1 2; do client_start "$d" "$i"; done
  wait "$CPID"
  crc=$?
  ccrc=0
  for i in 0 1 2; do wait "${CL[$i]}" || ccrc=1; done
  check "first: --wait passed with 3 of 4 clients: the first round starts, said so" \
    "grep -q '3 of the 4 clients in the allow-list connected within 6 s (--wait): the first round starts' '$d/coord.err'"
  check "first: the run completes (exit 0), clients 0-2 too" "[ $crc -eq 0 ] && [ $ccrc -eq 0 ]"
  [ $crc -eq 0 ] || tail -5 "$d/coord.err"
  "$FP" sim "$T/part.ini" --store "$T/first/sim.db" --quiet >"$d/sim.out" 2>&1
  n3=$(q "$d/sim.db" "select count(*) from client_rounds where client = 3")
  check "first: the daemon sampled the simulator's (round, client) pairs (client 3 in $n3 rounds)" \
    "[ '$n3' -ge 1 ] && [ \"\$(q '$d/db' 'select round, client from client_rounds order by 1, 2' | md5sum)\" = \"\$(q '$d/sim.db' 'select round, client from client_rounds order by 1, 2' | md5sum)\" ]"
  check "first: client 3 is 'absent' (not connected when sampled) in each of its $n3 rounds, the others included" \
    "[ \"\$(q '$d/db' \"select count(*) from client_rounds where client = 3 and status = 'absent' and reason like 'not connected when sampled%'\")\" = '$n3' ] && [ \"\$(q '$d/db' \"select count(*) from client_rounds where client <> 3 and status <> 'included'\")\" = 0 ]"
  replay_exact first 1 "$d/db"
else
  bad "first: coordinator listening"
fi

# ---- 2. fewer than min_updates at --wait: the run fails, saying why
d="$T/few"
if coord_start "$d" "$T/part.ini" --wait 2; then
  client_start "$d" 0
  wait "$CPID"
  crc=$?
  check "few: 1 of 4 connected at --wait, min_updates 2: the run fails (exit 1), saying so" \
    "[ $crc -eq 1 ] && grep -q 'only 1 of the 4 clients in the allow-list connected within 2 s; a round needs \[participation\] min_updates = 2' '$d/coord.err'"
  check "few: the run is 'failed' in the store" "[ \"\$(q '$d/db' 'select status from runs')\" = failed ]"
else
  bad "few: coordinator listening"
fi

# ---- 3. --resume-or-start: the newest run of the scenario, not an older completed one
d="$T/first"
if [ "$(q "$d/db" 'select status from runs where id = 1')" = completed ]; then
  # no timeout wrapper: the SIGKILL must reach the coordinator itself
  "$FP" coordinator --scenario "$T/part.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
    --allow "$T/clients.pub" --store "$d/db" --ready "$d/port2" --wait 30 >/dev/null 2>"$d/run2.err" &
  k=$!
  PIDS+=("$k")
  wait_log "$d/run2.err" 'listening on'
  kill -9 "$k"
  wait "$k" 2>/dev/null
  check "newest: run 2 of the same scenario, killed while waiting, is left 'running'" \
    "[ \"\$(q '$d/db' 'select status from runs where id = 2')\" = running ]"
  rm -f "$d"/c*.err "$d"/c*.out
  if coord_start "$d" "$T/part.ini" --wait 30 --resume-or-start; then
    for i in 0 1 2 3; do client_start "$d" "$i"; done
    wait "$CPID"
    crc=$?
    check "newest: --resume-or-start continues run 2 (not 'run 1 ... already completed') and completes it" \
      "[ $crc -eq 0 ] && grep -q 'continuing run 2 of ' '$d/coord.err' && [ \"\$(q '$d/db' 'select status from runs where id = 2')\" = completed ]"
    [ $crc -eq 0 ] || tail -3 "$d/coord.err"
    replay_exact newest 2 "$d/db"
    # and once run 2 is completed, the flag has nothing to do
    "$FP" coordinator --scenario "$T/part.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
      --allow "$T/clients.pub" --store "$d/db" --resume-or-start >/dev/null 2>"$d/again.err"
    check "newest: again, with run 2 completed: nothing to do (exit 0), no run 3" \
      "[ $? -eq 0 ] && grep -q 'run 2 in .* is already completed: nothing to do' '$d/again.err' && [ \"\$(q '$d/db' 'select count(*) from runs')\" = 2 ]"
  else
    bad "newest: --resume-or-start listens to continue run 2 (it said: $(tail -1 "$d/coord.err"))"
  fi
else
  bad "newest: run 1 completed first (section 1)"
fi

# ---- 4. a damaged --state file
"$FP" sim "$ROOT/scenarios/scaffold-quadratic.ini" --set data.clients=$N --set participation.sample=$N \
  --set participation.deadline=20 --set run.rounds=100000 --set run.eval_every=100000 \
  --dry-run >"$T/scaffold.ini"
d="$T/damaged"
if coord_start "$d" "$T/scaffold.ini" --wait 30; then
  for i in 0 1 2 3; do client_start "$d" "$i"; done
  for _ in $(seq 600); do
    [ "$(q "$d/db" 'select count(*) >= 3 from rounds')" = 1 ] && break
    sleep 0.05
  done
  kill -INT "$CPID"
  wait "$CPID"
  crc=$?
  for i in 0 1 2 3; do wait "${CL[$i]}"; done
  s0=$(ls "$d"/st0/client-0-run-1-*.state 2>/dev/null)
  s1=$(ls "$d"/st1/client-1-run-1-*.state 2>/dev/null)
  check "damaged: SCAFFOLD stopped by SIGINT (exit 130), clients 0 and 1 hold a state file" \
    "[ $crc -eq 130 ] && [ -s '$s0' ] && [ -s '$s1' ]"
  if [ -s "$s0" ] && [ -s "$s1" ]; then
    # one bit of a float near the file's end (before the checksum): finite still
    python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[-48] ^= 1; open(sys.argv[1], "wb").write(b)' "$s0"
    truncate -s -7 "$s1"
    rm -f "$d/port"
    if coord_start "$d" "$T/scaffold.ini" --wait 30 --resume-or-start; then
      for i in 0 1; do
        timeout 30 "$FP" client --connect "127.0.0.1:$PORT" --server-key "$CK" --key "$T/c$i.key" \
          --state "$d/st$i" --reconnect-for 0 >/dev/null 2>"$d/bad$i.err"
        echo $? >"$d/bad$i.rc"
      done
      check "damaged: a flipped bit in client 0's state: exit 1, naming the file and the checksum" \
        "[ \"\$(cat '$d/bad0.rc')\" = 1 ] && grep -q \"$s0: a damaged client state (its checksum does not match its bytes): refusing to train on it\" '$d/bad0.err'"
      check "damaged: client 1's state cut short: exit 1, naming the file and its size" \
        "[ \"\$(cat '$d/bad1.rc')\" = 1 ] && grep -q \"$s1: a damaged client state ([0-9]* bytes, expected [0-9]*)\" '$d/bad1.err'"
      kill "$CPID" 2>/dev/null
      wait "$CPID" 2>/dev/null
    else
      bad "damaged: the coordinator continues run 1"
    fi
  fi
else
  bad "damaged: coordinator listening"
fi

# ---- 5. the per-address cap over IPv6: a /64
if [ "$(id -u)" -ne 0 ]; then
  skip "ipv6 cap: network namespaces need root"
elif ! ip netns add "fpv6$$" 2>"$T/ns.err"; then
  skip "ipv6 cap: cannot make a network namespace: $(head -1 "$T/ns.err")"
else
  NS="fpv6$$"
  ip -n "$NS" link set lo up
  ip -n "$NS" -6 addr add fd00:fe::1/64 dev lo nodad
  ip -n "$NS" -6 addr add fd00:ff::1/64 dev lo nodad
  for i in $(seq 1 30); do ip -n "$NS" -6 addr add "fd00:fe::a:$(printf '%x' "$i")/64" dev lo nodad; done
  d="$T/v6"
  mkdir -p "$d"
  ip netns exec "$NS" timeout 55 "$FP" coordinator --scenario "$T/part.ini" --listen '[fd00:fe::1]:0' \
    --key "$T/coord.key" --allow "$T/clients.pub" --store "$d/db" --ready "$d/port" --wait 50 \
    --max-pending 16 >/dev/null 2>"$d/coord.err" &
  PIDS+=($!)
  for _ in $(seq 400); do [ -s "$d/port" ] && break; sleep 0.05; done
  if [ -s "$d/port" ]; then
    ip netns exec "$NS" python3 "$ROOT/tests/flood.py" burst6 fd00:fe::a: fd00:ff::1 fd00:fe::1 \
      "$(cat "$d/port")" 30 8 >"$d/burst.out" 2>&1
    check "ipv6 cap: 30 connections from 30 addresses of one /64 leave 8 open, the other /64's open ($(tail -1 "$d/burst.out"))" \
      "grep -q '^open 8, fd00:ff::1 open' '$d/burst.out' && [ \$(grep -c 'too many connections in their handshake from this address' '$d/coord.err') -eq 22 ]"
  else
    bad "ipv6 cap: the coordinator listens on [fd00:fe::1]"
    tail -3 "$d/coord.err"
  fi
fi

# ---- 6. heartbeats instead of an upload
"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set data.clients=$N --set participation.sample=$N \
  --set participation.min_updates=3 --set participation.wait_after_min=1 --set participation.deadline=4 \
  --set run.rounds=4 --dry-run >"$T/hb.ini"
d="$T/hb"
if coord_start "$d" "$T/hb.ini" --wait 30; then
  for i in 0 1 2; do client_start "$d" "$i"; done
  /usr/bin/python3 "$ROOT/tests/attack_peer.py" hbflood "$PORT" "$CK" "$T/c3.key" 6 >"$d/peer.out" 2>&1
  prc=$?
  wait "$CPID"
  crc=$?
  if [ $prc -eq 77 ]; then
    skip "hbflood: $(head -1 "$d/peer.out")"
  else
    k=$(sed -n 's/^sent \([0-9]*\) heartbeats.*/\1/p' "$d/peer.out")
    check "hbflood: the peer sent heartbeats instead of its upload (${k:-0})" "[ '${k:-0}' -ge 1000 ]"
    check "hbflood: the run completes (exit 0) without it: late in round 1, never included" \
      "[ $crc -eq 0 ] && [ \"\$(q '$d/db' \"select status from client_rounds where round = 1 and client = 3\")\" = late ] && [ \"\$(q '$d/db' \"select count(*) from client_rounds where client = 3 and status = 'included'\")\" = 0 ]"
    check "hbflood: clients 0-2 included in all 4 rounds" \
      "[ \"\$(q '$d/db' \"select count(*) from client_rounds where client < 3 and status = 'included'\")\" = 12 ]"
    replay_exact hbflood 1 "$d/db"
  fi
else
  bad "hbflood: coordinator listening"
fi

# ---- 7. a second process with the same key and --state
d="$T/twice"
if coord_start "$d" "$T/scaffold.ini" --wait 30; then
  for i in 0 1 2 3; do client_start "$d" "$i"; done
  for _ in $(seq 600); do
    [ "$(q "$d/db" 'select count(*) >= 2 from rounds')" = 1 ] && break
    sleep 0.05
  done
  timeout 30 "$FP" client --connect "127.0.0.1:$PORT" --server-key "$CK" --key "$T/c1.key" \
    --state "$d/st1" >/dev/null 2>"$d/second.err"
  src=$?
  at=$(q "$d/db" 'select count(*) from rounds')
  for _ in $(seq 600); do
    [ "$(q "$d/db" "select count(*) >= $at + 2 from rounds")" = 1 ] && break
    sleep 0.05
  done
  kill -INT "$CPID"
  wait "$CPID"
  crc=$?
  check "twice: the second process exits 1 before connecting, naming the first's pid" \
    "[ $src -eq 1 ] && grep -q \"another fedpress client (pid ${CL[1]}) runs with this key and --state\" '$d/second.err'"
  check "twice: the first is never replaced and is included in every round (the run stopped by SIGINT, exit 130)" \
    "[ $crc -eq 130 ] && ! grep -q 'replaced by a new connection' '$d/coord.err' && [ \"\$(q '$d/db' \"select count(*) from client_rounds where client = 1 and status = 'included'\")\" = \"\$(q '$d/db' 'select count(*) from rounds')\" ]"
  for i in 0 1 2 3; do wait "${CL[$i]}"; done
else
  bad "twice: coordinator listening"
fi
finish e2e_rev2
