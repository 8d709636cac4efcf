#!/usr/bin/env bash
# End-to-end test of `fedpress sim --replay` and the simulator's partial
# rounds (issue 14, "Replay"):
#  (a) a simulator run with [participation] dropout and a straggler model:
#      late and absent clients stored with their reasons, the same bytes at
#      --threads 1 and 2, and a replay that is exact and leaves the store as
#      it was;
#  (b) a coordinator run with 4 clients in which one sent a NaN upload
#      (refused), one was frozen with SIGSTOP past the deadline (late) and
#      one killed (absent): the simulator replays it exactly;
#  (c) a tampered copy of each store (an upload's hash, a train loss, the
#      final model changed with sqlite3): divergent, naming the round and
#      the client.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_replay_XXXXXX)
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
trap end_jobs EXIT
q() { sqlite3 "$1" "$2" 2>/dev/null; }
# dump DB: the store's content, to show a replay changed nothing in it
dump() { sqlite3 "$1" .dump 2>/dev/null | sha256sum; }

# ---- (a) the simulator's dropout and stragglers ----
"$FP" sim "$ROOT/scenarios/scaffold-quadratic.ini" --set run.rounds=60 --set data.clients=12 \
  --set participation.sample=8 --set participation.deadline=4 --set participation.min_updates=4 \
  --set participation.wait_after_min=1 --set participation.dropout=0.2 \
  --set participation.straggler=lognormal:0.8:0.4 --set participation.answer_time=1.5 \
  --dry-run >"$T/drop.ini" 2>"$T/dry.err"
check "sim: dropout, straggler and answer_time enter the canonical text" \
  "grep -qx 'dropout = 0.2' '$T/drop.ini' && grep -qx 'straggler = lognormal:0.8:0.4' '$T/drop.ini' && grep -qx 'answer_time = 1.5' '$T/drop.ini'"
for t in 1 2; do
  "$FP" sim "$T/drop.ini" --store "$T/sim$t.db" --threads $t >"$T/sim$t.out" 2>"$T/sim$t.err"
  echo $? >"$T/sim$t.rc"
done
db=$T/sim1.db
check "sim: the run with dropout completes at --threads 1 and 2 with the same model" \
  "[ \"\$(cat '$T/sim1.rc')\" = 0 ] && [ \"\$(cat '$T/sim2.rc')\" = 0 ] && [ -n \"\$(grep '^model sha256' '$T/sim1.out')\" ] && [ \"\$(grep '^model sha256' '$T/sim1.out')\" = \"\$(grep '^model sha256' '$T/sim2.out')\" ]"
check "sim: every client row (480 of them) is the same at --threads 1 and 2 (status, reason, upload hash)" \
  "[ \"\$(q '$T/sim1.db' 'select count(*) from client_rounds')\" = 480 ] && [ \"\$(q '$T/sim1.db' 'select round, client, status, reason, upload_sha256 from client_rounds' | sha256sum)\" = \"\$(q '$T/sim2.db' 'select round, client, status, reason, upload_sha256 from client_rounds' | sha256sum)\" ]"
absent=$(q "$db" "select count(*) from client_rounds where status = 'absent' and reason like 'dropped out (simulated: [participation] dropout = 0.2)' and upload_sha256 is null and uplink_bytes = 0")
late=$(q "$db" "select count(*) from client_rounds where status = 'late' and reason like 'no upload when the round closed (%simulated answer time%' and upload_sha256 is null")
check "sim: dropped clients are 'absent' ($absent) and slow ones 'late' ($late), with their reasons" \
  "[ \"\${absent:-0}\" -gt 0 ] && [ \"\${late:-0}\" -gt 0 ]"
check "sim: every round has a row for each of its 8 sampled clients, and counts its included ones" \
  "[ \"\$(q '$db' 'select count(*) from client_rounds')\" = \"\$(q '$db' 'select 8 * count(*) from rounds')\" ] && [ \"\$(q '$db' \"select count(*) from rounds r where participants != (select count(*) from client_rounds c where c.round = r.round and c.status = 'included')\")\" = 0 ]"
check "sim: a round below min_updates is tried again (a line on the progress stream); every round has at least 4 in" \
  "grep -q '] round [0-9]*: [0-3] of the 4 uploads it needs arrived; trying it again (attempt 2 of 3); not answering: ' '$T/sim1.err' && [ \"\$(q '$db' \"select count(*) from rounds where participants < 4\")\" = 0 ]"
# the same with min_updates = 5: round 19 falls short three times, and the
# run fails naming who did not answer
"$FP" sim "$T/drop.ini" --set participation.min_updates=5 --store "$T/fail.db" --quiet >"$T/fail.out" 2>"$T/fail.err"
rc=$?
check "sim: below min_updates in 3 attempts the run fails (exit 1), naming the round and who did not answer" \
  "[ $rc -eq 1 ] && grep -q '^fedpress: round 19: only [0-4] of the 5 uploads it needs (\\[participation\\] min_updates) arrived, in the last of 3 attempts; not answering: [0-9]* (absent: dropped out' '$T/fail.err' && \"$FP\" runs --store '$T/fail.db' --format csv | tail -1 | grep -q ',failed'"
"$FP" sim --replay 1 --store "$T/fail.db" --quiet >"$T/rpf.out" 2>"$T/rpf.err"
check "replay (the failed run): its 18 committed rounds replay exactly; it stored no final model" \
  "[ $? -eq 0 ] && grep -q '^replay of run 1: exact: 18 rounds, .*(the run stored no final model to compare)' '$T/rpf.out'"

before=$(dump "$db")
"$FP" sim --replay 1 --store "$db" --threads 2 >"$T/rp.out" 2>"$T/rp.err"
rc=$?
check "replay (sim run): exact (exit 0), every round, upload and the final model" \
  "[ $rc -eq 0 ] && grep -q '^replay of run 1: exact: 60 rounds, [0-9]* included uploads .* and the final model (sha256 ' '$T/rp.out' && grep -q \"\$(grep '^model sha256' '$T/sim1.out' | cut -d' ' -f3)\" '$T/rp.out'"
check "replay (sim run): a progress line per round on stderr" \
  "grep -q 'replaying run 1 (completed, 60 rounds logged)' '$T/rp.err' && [ \"\$(grep -c '] round [0-9]*/60 ' '$T/rp.err')\" = 60 ]"
check "replay (sim run): the replayed store is unchanged (no new run, same content)" \
  "[ \"\$(dump '$db')\" = '$before' ] && [ \"\$(q '$db' 'select count(*) from runs')\" = 1 ]"
"$FP" sim --replay 1 --store "$db" --set run.rounds=3 >"$T/u.out" 2>"$T/u.err"
check "replay: --set is a usage error (exit 2)" "[ $? -eq 2 ] && grep -q 'replay runs the stored scenario as it was' '$T/u.err'"
"$FP" sim --replay 7 --store "$db" >"$T/u.out" 2>"$T/u.err"
check "replay: a run the store does not have is exit 1, named" "[ $? -eq 1 ] && grep -q 'no run 7' '$T/u.err'"
"$FP" help >"$T/help.out" 2>&1
check "help: documents sim --replay" "grep -q -- 'sim --replay RUN \\[--store PATH\\] \\[--threads N\\] \\[--quiet\\]' '$T/help.out'"

# (c) on the sim run: a tampered upload hash
cp "$db" "$T/tamper1.db"
read -r tr tc < <(q "$T/tamper1.db" "select round, client from client_rounds where status = 'included' and round = 17 order by client limit 1 offset 1" | tr '|' ' ')
q "$T/tamper1.db" "update client_rounds set upload_sha256 = replace(upload_sha256, substr(upload_sha256, 1, 1), case substr(upload_sha256, 1, 1) when '0' then '1' else '0' end) where round = $tr and client = $tc"
"$FP" sim --replay 1 --store "$T/tamper1.db" >"$T/t1.out" 2>"$T/t1.err"
rc=$?
check "tampered upload hash (round $tr, client $tc): divergent (exit 1), naming them" \
  "[ $rc -eq 1 ] && grep -q \"^replay of run 1: divergent at round $tr, client $tc: its upload's sha256 differs\" '$T/t1.out' && grep -q '^likely cause\\|^or:' '$T/t1.out'"
check "tampered: the replay stopped at that round (its last progress line is round $tr)" \
  "grep '] round [0-9]*/60 ' '$T/t1.err' | tail -1 | grep -q '] round $tr/60 '"

# ---- (b) a coordinator run with a late and an absent client ----
N=4
make_keys $N
# SCAFFOLD on the quadratic, N = S = 4: a round closes when all answered
# (or left) or at the 1 s deadline; 1 upload suffices (client 0's, when
# client 1's is refused, 2 is frozen and 3 is gone).
"$FP" sim "$ROOT/scenarios/scaffold-quadratic.ini" --set data.clients=$N --set participation.sample=$N \
  --set run.rounds=300 --set run.eval_every=50 --set participation.deadline=1 \
  --set participation.min_updates=1 --set participation.wait_after_min=60 --dry-run >"$T/part.ini"
d=$T/daemon
mkdir -p "$d"
timeout 60 "$FP" coordinator --scenario "$T/part.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
  --allow "$T/clients.pub" --store "$d/daemon.db" --ready "$d/port" --wait 30 \
  >"$d/coord.out" 2>"$d/coord.err" &
cpid=$!
cpids=()
if port=$(wait_port "$d/port" "$cpid"); then
  for i in $(seq 0 $((N - 1))); do
    mkdir -p "$d/st$i"
    extra=()
    [ "$i" = 1 ] && extra=(--test-bad-upload 3:nan) # refused in round 3
    timeout 60 "$FP" client --connect "127.0.0.1:$port" --server-key "$CK" --key "$T/c$i.key" \
      --state "$d/st$i" "${extra[@]}" >"$d/c$i.out" 2>"$d/c$i.err" &
    cpids+=($!)
  done
  wait_log "$d/coord.err" "4 of 4 connected"
  # at once, both while the first rounds run: client 3 killed, client 2 frozen
  kill -KILL "$(pgrep -P "${cpids[3]}")"
  frozen=$(pgrep -P "${cpids[2]}")
  kill -STOP "$frozen"
  { wait "${cpids[3]}"; } 2>/dev/null
  wait_log "$d/coord.err" "round [0-9]*: [0-9] of 4 sampled clients included, 1 late"
  kill -CONT "$frozen"
  wait "$cpid"
  crc=$?
  ddb=$d/daemon.db
  nlate=$(q "$ddb" "select count(*) from client_rounds where client = 2 and status = 'late'")
  nabsent=$(q "$ddb" "select count(*) from client_rounds where client = 3 and status = 'absent'")
  nrefused=$(q "$ddb" "select count(*) from client_rounds where client = 1 and round = 3 and status = 'refused'")
  check "daemon: the run completes with client 1 refused in round 3 ($nrefused), client 2 late ($nlate) and client 3 absent ($nabsent rounds)" \
    "[ $crc -eq 0 ] && [ \"\${nrefused:-0}\" = 1 ] && [ \"\${nlate:-0}\" -ge 1 ] && [ \"\${nabsent:-0}\" -ge 1 ] && \"$FP\" runs --store '$ddb' --format csv | tail -1 | grep -q ',completed'"
  for p in "${cpids[@]:0:3}"; do wait "$p"; done
  before=$(dump "$ddb")
  "$FP" sim --replay 1 --store "$ddb" --threads 2 >"$d/rp.out" 2>"$d/rp.err"
  rc=$?
  dsha=$(q "$ddb" "select model_sha256 from runs where id = 1")
  check "replay (daemon run): the simulator reproduces it exactly (exit 0, final model $dsha)" \
    "[ $rc -eq 0 ] && grep -q '^replay of run 1: exact: 300 rounds' '$d/rp.out' && [ -n '$dsha' ] && grep -q '$dsha' '$d/rp.out'"
  check "replay (daemon run): the coordinator's store is unchanged" "[ \"\$(dump '$ddb')\" = '$before' ]"

  # (c) on the daemon run: a train loss, then the final model
  cp "$ddb" "$T/tamper2.db"
  read -r tr tc < <(q "$T/tamper2.db" "select round, client from client_rounds where status = 'included' and round = 5 order by client desc limit 1" | tr '|' ' ')
  q "$T/tamper2.db" "update client_rounds set train_loss = train_loss * 2 + 1 where round = $tr and client = $tc"
  "$FP" sim --replay 1 --store "$T/tamper2.db" --quiet >"$T/t2.out" 2>"$T/t2.err"
  rc=$?
  check "tampered train loss (daemon run, round $tr, client $tc): divergent (exit 1), naming them" \
    "[ $rc -eq 1 ] && grep -q \"^replay of run 1: divergent at round $tr, client $tc: its train_loss or bytes differ\" '$T/t2.out'"
  cp "$ddb" "$T/tamper3.db"
  q "$T/tamper3.db" "update runs set model_sha256 = '$(printf '%064d' 0)' where id = 1"
  "$FP" sim --replay 1 --store "$T/tamper3.db" --quiet >"$T/t3.out" 2>"$T/t3.err"
  rc=$?
  check "tampered final model (daemon run): divergent (exit 1) at the last round, the model named" \
    "[ $rc -eq 1 ] && grep -q \"^replay of run 1: divergent at round 300: the final model's sha256 differs (log 000000000000..., replay ${dsha:0:12}...)\" '$T/t3.out'"
  cp "$ddb" "$T/tamper4.db"
  q "$T/tamper4.db" "update client_rounds set status = 'late', reason = 'x', upload_sha256 = NULL where round = 9 and client = 0"
  "$FP" sim --replay 1 --store "$T/tamper4.db" --quiet >"$T/t4.out" 2>"$T/t4.err"
  rc=$?
  check "tampered participation (client 0 marked late in round 9): divergent at round 9" \
    "[ $rc -eq 1 ] && grep -q '^replay of run 1: divergent at round 9: the round.s metrics differ' '$T/t4.out'"
else
  bad "daemon: coordinator listening"
fi

finish e2e_replay
