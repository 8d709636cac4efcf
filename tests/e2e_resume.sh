#!/usr/bin/env bash
# End-to-end test of the coordinator's crash recovery (issue 14): a
# coordinator and 3 clients on 127.0.0.1, FedAvg on the quadratic (no client
# state), the coordinator started as a systemd unit would start it, with
# --resume-or-start, every time:
#  - kill -9 after at least one committed round (its clients frozen, so
#    the kill lands mid-round), then the same command: it continues the run
#    from its last committed round;
#  - kill -9 again at whatever moment its progress line for a later round is
#    read (mid-round, mid-commit, mid-broadcast), then the same command;
#  - the run completes with the model SHA-256 of `fedpress sim` of the
#    same scenario, and the store holds one run, every round once, with a
#    client_rounds row per sampled client;
#  - refused: --resume of the completed run (exit 1); --resume-or-start of
#    it does nothing (exit 0, no new run); a second coordinator on a run
#    another live coordinator holds (the store's run lock); --resume of a
#    run with a different --scenario; --resume-or-start with a different
#    scenario starts a new run instead of continuing the other's;
#  - --resume RUN (the explicit form, the stored scenario) completes that run
#    with the simulator's model;
#  - SCAFFOLD (client state): stopped by SIGINT, then the same command and
#    the clients' same --state: the simulator's model.
#  - SCAFFOLD: kill -9 of the coordinator right after a round's commit,
#    before its results reach the clients, the clients left running: the same command on the same port, the clients
#    reconnect by themselves, and each commits or drops the state it
#    prepared by the last included round its welcome names: the
#    simulator's model.
# In sections 1-2 the test kills the clients and starts new ones with the
# same --state directories (a client restarted by its unit).
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_resume_XXXXXX)
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
trap 'end_jobs KILL' EXIT
N=3 S=2 R=3000 k1=0
q() { sqlite3 "$T/runs.db" "$1" 2>/dev/null; }

make_keys $N
for i in $(seq 0 $((N - 1))); do mkdir -p "$T/st$i"; done
"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set data.clients=$N --set participation.sample=$S \
  --set run.rounds=$R --set run.eval_every=500 --set participation.deadline=20 --dry-run >"$T/run.ini"
"$FP" sim "$T/run.ini" --set run.seed=2 --dry-run >"$T/other.ini"
"$FP" sim "$T/run.ini" --store "$T/sim.db" --quiet >"$T/sim.out" 2>&1
want=$(sed -n 's/^model sha256 //p' "$T/sim.out")

# The operator's one command (a unit's ExecStart), for any start.
COORD=("$FP" coordinator --scenario "$T/run.ini" --listen 127.0.0.1:0 --key "$T/coord.key"
  --allow "$T/clients.pub" --store "$T/runs.db" --resume-or-start --wait 30)


# start K: the coordinator (stdout through a FIFO read by progress_reader)
# and the N clients; sets cpid (the coordinator itself) and kids.
start() {
  local k=$1
  rm -f "$T/port$k"
  mkfifo "$T/fifo$k"
  "${COORD[@]}" --ready "$T/port$k" >"$T/fifo$k" 2>"$T/coord$k.err" &
  cpid=$!
  exec {fd}<"$T/fifo$k"
  port=$(wait_port "$T/port$k" "$cpid") || return 1
  kids=()
  for i in $(seq 0 $((N - 1))); do
    "$FP" client --connect "127.0.0.1:$port" --server-key "$CK" --key "$T/c$i.key" \
      --state "$T/st$i" >"$T/c$i.$k.out" 2>"$T/c$i.$k.err" &
    kids+=($!)
  done
}
# read_progress K [KILL_AT]: copies the coordinator's stdout to coordK.out;
# with KILL_AT, kill -9 of the coordinator as soon as it reports a round >=
# KILL_AT committed (whatever it is doing then).
read_progress() {
  local k=$1 at=${2:-0} line
  while IFS= read -r -u "$fd" line; do
    echo "$line" >>"$T/coord$k.out"
    if [ "$at" -gt 0 ] && [[ $line =~ \ round\ ([0-9]+)/ ]] && [ "${BASH_REMATCH[1]}" -ge "$at" ]; then
      kill -KILL "$cpid"
      at=0
    fi
  done
  exec {fd}<&-
}
end_clients() { for p in "${kids[@]}"; do kill -CONT "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; }
# after a kill -9 of the coordinator the clients would reconnect (for up to
# --reconnect-for): the sections that start new clients end the old ones
kill_clients() { for p in "${kids[@]}"; do kill -KILL "$p" 2>/dev/null; done; end_clients; }

# 1. First start: a new run; kill -9 after >= 1 committed round, its clients frozen.
if start 1; then
  read_progress 1 &
  rp=$!
  wait_for "select count(*) >= 1 from rounds"
  kill -STOP "${kids[@]}"
  kill -KILL "$cpid"
  wait "$cpid" 2>/dev/null
  wait "$rp"
  for p in "${kids[@]}"; do kill -KILL "$p"; done
  end_clients
  exec {fd}<&-
  k1=$(q "select count(*) from rounds")
  check "first start: a new run ('no run of this scenario: starting one')" \
    "grep -q 'holds no run of this scenario: starting one' '$T/coord1.err'"
  check "kill -9 mid-run: run 1 is left 'running' with $k1 committed rounds (>= 1, < $R)" \
    "[ \"\$(q 'select status from runs where id = 1')\" = running ] && [ '$k1' -ge 1 ] && [ '$k1' -lt $R ]"
else
  bad "first start: coordinator listening"
fi

# 2. The same command: continues run 1 after its last committed round; kill -9
# again at the moment it reports round k1 + 100 committed.
at=$((k1 + 100))
if start 2; then
  read_progress 2 "$at"
  wait "$cpid" 2>/dev/null
  crc=$?
  kill_clients
  k2=$(q "select count(*) from rounds")
  check "the same command continues run 1 after round $k1, its last committed round" \
    "grep -q \"continuing run 1 of .* after round $k1\$\" '$T/coord2.err' && head -1 '$T/coord2.out' | grep -q \" round $((k1 + 1))/$R \""
  if [ "$k2" -lt "$R" ]; then
    check "kill -9 at round >= $at's progress line: killed (status $crc), $k2 rounds committed" \
      "[ $crc -eq 137 ] && [ '$k2' -ge '$at' ] && [ \"\$(q 'select status from runs where id = 1')\" = running ]"
  else
    skip "second kill -9: the run completed before the kill landed (a loaded machine)"
  fi
else
  bad "second start: coordinator listening"
fi

# 3. The same command: the run completes, with the simulator's model.
if start 3; then
  read_progress 3
  wait "$cpid"
  crc=$?
  end_clients
  got=$(sed -n 's/^model sha256 //p' "$T/coord3.out")
  check "the same command again: the run completes (exit 0)" \
    "[ $crc -eq 0 ] && grep -q \"^run 1 'fedavg-quadratic' completed: $R/$R rounds\" '$T/coord3.out'"
  check "final model sha256 equals fedpress sim's ($want)" "[ -n '$want' ] && [ '$got' = '$want' ]"
  replay_exact "killed twice, resumed" 1 "$T/runs.db"
  check "the store: one run, 'completed', with the model sha256" \
    "[ \"\$(q 'select count(*) from runs')\" = 1 ] && [ \"\$(q 'select status || model_sha256 from runs')\" = 'completed$want' ]"
  check "the store: every round 1..$R once, each with $S client rows" \
    "[ \"\$(q 'select count(*) || \",\" || count(distinct round) || \",\" || min(round) || \",\" || max(round) from rounds')\" = '$R,$R,1,$R' ] && [ \"\$(q \"select count(*) from (select round from client_rounds group by round having count(*) = $S and count(distinct client) = $S)\")\" = $R ]"
  check "the store: every round's metrics equal the simulator's" \
    "[ \"\$(sqlite3 '$T/runs.db' 'select round, train_loss, test_loss, uplink_bytes from rounds order by round' | md5sum)\" = \"\$(sqlite3 '$T/sim.db' 'select round, train_loss, test_loss, uplink_bytes from rounds order by round' | md5sum)\" ]"
else
  bad "third start: coordinator listening"
fi

# 4. Refusals.
"$FP" coordinator --resume 1 --listen 127.0.0.1:0 --key "$T/coord.key" --allow "$T/clients.pub" \
  --store "$T/runs.db" >"$T/r4.out" 2>"$T/r4.err"
rc=$?
check "--resume of the completed run: refused (exit 1), saying so" \
  "[ $rc -eq 1 ] && grep -q 'run 1 in .* is already completed; a completed run is never continued' '$T/r4.err'"
"${COORD[@]}" >"$T/r5.out" 2>"$T/r5.err"
rc=$?
check "--resume-or-start of the completed scenario: nothing to do (exit 0), no new run" \
  "[ $rc -eq 0 ] && grep -q 'already completed: nothing to do' '$T/r5.err' && [ \"\$(q 'select count(*) from runs')\" = 1 ]"

# a run held by a live coordinator (waiting for its clients): another one is refused
"$FP" coordinator --scenario "$T/other.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
  --allow "$T/clients.pub" --store "$T/runs.db" --ready "$T/port6" --wait 30 >/dev/null 2>"$T/r6.err" &
hold=$!
if wait_port "$T/port6" "$hold" >/dev/null; then
  "$FP" coordinator --resume 2 --listen 127.0.0.1:0 --key "$T/coord.key" --allow "$T/clients.pub" \
    --store "$T/runs.db" >/dev/null 2>"$T/r7.err"
  rc=$?
  check "--resume of a run another live coordinator holds: refused (exit 1), naming its pid" \
    "[ $rc -eq 1 ] && grep -q \"Run 2 of .* is being run by another process (pid $hold).* A run has one coordinator\" '$T/r7.err'"
  "$FP" coordinator --scenario "$T/other.ini" --resume-or-start --listen 127.0.0.1:0 \
    --key "$T/coord.key" --allow "$T/clients.pub" --store "$T/runs.db" >/dev/null 2>"$T/r8.err"
  rc=$?
  check "--resume-or-start of that scenario while it runs: refused too (exit 1)" \
    "[ $rc -eq 1 ] && grep -q 'A run has one coordinator' '$T/r8.err'"
  kill -KILL "$hold"
  wait "$hold" 2>/dev/null
  "$FP" coordinator --resume 2 --scenario "$T/run.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
    --allow "$T/clients.pub" --store "$T/runs.db" >/dev/null 2>"$T/r9.err"
  rc=$?
  check "--resume of run 2 with another --scenario: refused (exit 1), run 2 untouched" \
    "[ $rc -eq 1 ] && grep -q 'run 2 was started with another scenario than' '$T/r9.err' && [ \"\$(q 'select status from runs where id = 2')\" = running ]"
else
  bad "a coordinator holding run 2: listening"
fi
# a changed scenario under --resume-or-start is another run: run 2 is not continued
"$FP" sim "$T/other.ini" --set run.seed=3 --dry-run >"$T/third.ini"
"$FP" coordinator --scenario "$T/third.ini" --resume-or-start --listen 127.0.0.1:0 \
  --key "$T/coord.key" --allow "$T/clients.pub" --store "$T/runs.db" --ready "$T/port10" \
  --wait 30 >/dev/null 2>"$T/r10.err" &
p10=$!
wait_port "$T/port10" "$p10" >/dev/null
check "--resume-or-start with a changed scenario: a new run 3, run 2 left as it was" \
  "grep -q 'starting one' '$T/r10.err' && grep -q 'run 3: listening' '$T/r10.err' && [ \"\$(q 'select status from runs where id = 2')\" = running ]"
kill -INT "$p10"
wait "$p10" 2>/dev/null

# --resume RUN, the explicit form, with the stored scenario: run 2 (killed
# before its first round) completes with the simulator's model of its scenario
"$FP" sim "$T/other.ini" --store "$T/sim.db" --quiet >"$T/sim_other.out" 2>&1
want=$(sed -n 's/^model sha256 //p' "$T/sim_other.out")
SAVED=("${COORD[@]}")
COORD=("$FP" coordinator --resume 2 --listen 127.0.0.1:0 --key "$T/coord.key"
  --allow "$T/clients.pub" --store "$T/runs.db" --wait 30)
if start 13; then
  read_progress 13
  wait "$cpid"
  crc=$?
  end_clients
  got=$(sed -n 's/^model sha256 //p' "$T/coord13.out")
  check "--resume 2 (no --scenario): run 2 continues from round 0 and completes with sim's model" \
    "[ $crc -eq 0 ] && grep -q 'continuing run 2 of .* after round 0\$' '$T/coord13.err' && [ -n '$want' ] && [ '$got' = '$want' ] && [ \"\$(q 'select count(*) from rounds where run_id = 2')\" = $R ]"
  replay_exact "--resume 2" 2 "$T/runs.db"
else
  bad "--resume 2: coordinator listening"
fi
COORD=("${SAVED[@]}")

# 5. SCAFFOLD (client state c_i in --state): stopped with SIGINT (the round
# in progress is committed and every client told, so each client's state
# matches the store), then the same command with the same --state
# directories: the simulator's model. (After a kill -9 between a round's
# commit and its result reaching a client, that client's c_i would lag the
# store's: the welcome's last included round, fp_store_last_included, is
# what lets it commit or discard its prepared state; docs/daemons.md.)
"$FP" sim "$ROOT/scenarios/scaffold-quadratic.ini" --set data.clients=$N --set participation.sample=$S \
  --set run.rounds=600 --set run.eval_every=100 --set participation.deadline=20 --dry-run >"$T/scaffold.ini"
"$FP" sim "$T/scaffold.ini" --store "$T/sim.db" --quiet >"$T/sim2.out" 2>&1
want=$(sed -n 's/^model sha256 //p' "$T/sim2.out")
COORD[3]="$T/scaffold.ini"
if start 11; then
  read_progress 11 &
  rp=$!
  wait_for "select count(*) >= 1 from rounds where run_id = 4"
  kill -INT "$cpid"
  wait "$cpid"
  crc=$?
  wait "$rp"
  exec {fd}<&-
  end_clients
  k=$(q "select count(*) from rounds where run_id = 4")
  check "SCAFFOLD: SIGINT after $k rounds: the run is 'interrupted' (exit 130)" \
    "[ $crc -eq 130 ] && [ \"\$(q 'select status from runs where id = 4')\" = interrupted ] && [ '$k' -lt 600 ]"
  if start 12; then
    read_progress 12
    wait "$cpid"
    crc=$?
    end_clients
    got=$(sed -n 's/^model sha256 //p' "$T/coord12.out")
    check "SCAFFOLD: the same command continues run 4 after round $k and completes it (exit 0)" \
      "[ $crc -eq 0 ] && grep -q \"continuing run 4 of .* after round $k\$\" '$T/coord12.err'"
    check "SCAFFOLD: with the clients' --state read back, the simulator's model ($want)" \
      "[ -n '$want' ] && [ '$got' = '$want' ] && ls '$T'/st0/*.state >/dev/null"
    replay_exact "SCAFFOLD after SIGINT" 4 "$T/runs.db"
  else
    bad "SCAFFOLD: second start listening"
  fi
else
  bad "SCAFFOLD: first start listening"
fi

# 6. SCAFFOLD, the coordinator SIGKILLs itself right after round 40's
# commit, before any client hears it was included (its hidden test hook
# --test-die-after-commit), the clients left running: the same command on
# the same port. The clients reconnect
# by themselves; the resumed coordinator's welcome carries each client's
# last included round from the store, so a client whose upload was
# committed but never heard so commits its prepared state.
"$FP" sim "$T/scaffold.ini" --set run.seed=5 --dry-run >"$T/scaffold5.ini"
"$FP" sim "$T/scaffold5.ini" --store "$T/sim.db" --quiet >"$T/sim5.out" 2>&1
want=$(sed -n 's/^model sha256 //p' "$T/sim5.out")
for i in $(seq 0 $((N - 1))); do mkdir -p "$T/st5_$i"; done
COORD=("$FP" coordinator --scenario "$T/scaffold5.ini" --listen 127.0.0.1:0 --key "$T/coord.key"
  --allow "$T/clients.pub" --store "$T/runs.db" --resume-or-start --wait 30)
rm -f "$T/port14"
mkfifo "$T/fifo14"
"${COORD[@]}" --ready "$T/port14" --test-die-after-commit 40 >"$T/fifo14" 2>"$T/coord14.err" &
cpid=$!
exec {fd}<"$T/fifo14"
if port=$(wait_port "$T/port14" "$cpid"); then
  kids=()
  for i in $(seq 0 $((N - 1))); do
    "$FP" client --connect "127.0.0.1:$port" --server-key "$CK" --key "$T/c$i.key" \
      --state "$T/st5_$i" >"$T/c$i.14.out" 2>"$T/c$i.14.err" &
    kids+=($!)
  done
  read_progress 14
  wait "$cpid" 2>/dev/null
  crc=$?
  run5=$(q "select id from runs where scenario = (select scenario from runs order by id desc limit 1) order by id desc limit 1")
  k=$(q "select count(*) from rounds where run_id = $run5")
  check "SCAFFOLD: SIGKILL right after round 40's commit (status $crc), before any result went out" \
    "[ $crc -eq 137 ] && [ '$k' = 40 ]"
  COORD[5]="127.0.0.1:$port"
  "${COORD[@]}" --ready "$T/port15" >"$T/coord15.out" 2>"$T/coord15.err" &
  cpid=$!
  wait "$cpid"
  crc=$?
  ccodes=""
  for p in "${kids[@]}"; do wait "$p"; ccodes="$ccodes$?"; done
  got=$(sed -n 's/^model sha256 //p' "$T/coord15.out")
  check "SCAFFOLD: the same command on the same port continues run $run5 after round $k (exit 0)" \
    "[ $crc -eq 0 ] && grep -q \"continuing run $run5 of .* after round $k\$\" '$T/coord15.err'"
  check "SCAFFOLD: the clients reconnected by themselves and completed (exit 000: $ccodes)" \
    "[ '$ccodes' = 000 ] && grep -q 'complete' '$T/c0.14.out'"
  check "SCAFFOLD after kill -9, clients left running: the simulator's model ($want)" \
    "[ -n '$want' ] && [ '$got' = '$want' ] && [ \"\$(q \"select count(*) || ',' || count(distinct round) from rounds where run_id = $run5\")\" = '600,600' ]"
  # The final model alone cannot tell: this quadratic converges to the same
  # float32 minimiser from a perturbed c_i. The replay compares every
  # upload and every round's metrics with the simulator's.
  "$FP" sim --replay "$run5" --store "$T/runs.db" --quiet >"$T/replay5.out" 2>&1
  rrc=$?
  check "SCAFFOLD after kill -9: sim --replay finds every upload and round exact (exit $rrc)" \
    "[ $rrc -eq 0 ] && grep -q 'exact' '$T/replay5.out'"
else
  bad "SCAFFOLD kill -9: coordinator listening"
fi
exec {fd}<&-

finish e2e_resume
