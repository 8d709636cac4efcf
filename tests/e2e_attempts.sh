#!/usr/bin/env bash
# End-to-end test of failed attempts in the store (issue 14: a round below
# [participation] min_updates is tried again, at most 3 attempts, then the
# run fails). Schema 6 stores each failed attempt when it closes (attempts,
# attempt_clients) and a failed run's reason (runs.error):
#  a. the simulator with 30 % dropout: every retry line it prints is one
#     attempts row with the same round, attempt, count and the same
#     clients not answering, with the same status and reason; one round
#     fails twice and then commits; the rows are the same at any thread
#     count; the replay stays exact. A seed whose round fails three times:
#     the run is 'failed' with stderr's message in runs.error, and
#     --resume tries the round again, keeping the first three attempts;
#     the readers (runs, metrics, --replay) read a version 5 store as it is;
#  b. a coordinator whose client 2 trains past the deadline and whose
#     client 3 never connects (no key): round 1's three attempts are stored
#     with the statuses and reasons the coordinator's rules give
#     (docs/daemons.md), the run is 'failed' with the message it printed,
#     the SQL of docs/deployment.md shows them as written, and
#     --resume-or-start with every client answering completes the same run,
#     the failed attempts kept, and the run replays exactly.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_attempts_XXXXXX)
PIDS=()
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
trap end_jobs EXIT

# The retry lines a store's attempts rows say, in the words of the progress
# line and the coordinator's log (FP_PART_RETRY, run/participation.h): one
# line per failed attempt of run 1 that was tried again, in the order they
# closed; the failed run's last attempt says FP_PART_GIVE_UP instead.
retry_lines() {
  q "$1" "SELECT 'round ' || a.round || ': ' || a.uploads || ' of the ' || a.min_updates
      || ' uploads it needs arrived; trying it again (attempt ' || (a.attempt + 1) || ' of 3);'
      || ' not answering:' || coalesce((SELECT group_concat(x, '') FROM (SELECT ' ' || c.client
      || ' (' || c.status || ': ' || c.reason || ')' AS x FROM attempt_clients AS c
      WHERE c.attempt_id = a.id AND c.status != 'answered' ORDER BY c.client)), '')
    FROM attempts AS a WHERE a.run_id = 1 AND a.attempt < 3 ORDER BY a.id"
}
# every attempts row of run 1 but its time, with its clients
dump() {
  q "$1" "SELECT a.round, a.attempt, a.uploads, a.min_updates, c.client, c.status,
      coalesce(c.reason, '-') FROM attempts AS a JOIN attempt_clients AS c ON c.attempt_id = a.id
    WHERE a.run_id = 1 ORDER BY a.id, c.client"
}

# ---- a. the simulator ----
"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set run.rounds=10 --set participation.min_updates=4 \
  --set participation.dropout=0.3 --set participation.deadline=10 --dry-run >"$T/drop.ini"
# seed 4: rounds 2, 4 and 8 fail once, round 6 twice, and every round commits
# (progress lines, the retry lines among them, go to stderr)
"$FP" sim "$T/drop.ini" --set run.seed=4 --store "$T/s4.db" >"$T/s4.out" 2>"$T/s4.err"
rc=$?
db="$T/s4.db"
check "sim: the run with dropout completes (exit 0)" "[ $rc -eq 0 ]"
sed -n 's/^\[fedavg-quadratic\] \(round [0-9]*: .*trying it again.*\)$/\1/p' "$T/s4.err" >"$T/s4.printed"
retry_lines "$db" >"$T/s4.stored"
check "sim: it printed retry lines ($(wc -l <"$T/s4.printed")), one per failed attempt" \
  "[ \$(wc -l <'$T/s4.printed') -ge 2 ]"
check "sim: the store has an attempts row for each, with the same round, attempt, count, and clients not answering with their status and reason" \
  "cmp -s '$T/s4.printed' '$T/s4.stored'"
check "sim: every failed attempt has a row for each of the 5 sampled clients, its answered ones as many as its uploads, fewer than 4" \
  "[ \"\$(q '$db' \"SELECT count(*) FROM attempts AS a WHERE (SELECT count(*) FROM attempt_clients WHERE attempt_id = a.id) != 5 OR (SELECT count(*) FROM attempt_clients WHERE attempt_id = a.id AND status = 'answered') != a.uploads OR a.uploads >= 4 OR a.min_updates != 4\")\" = 0 ]"
check "sim: each failed attempt sampled the clients its committed round has in client_rounds (the same sample)" \
  "[ \"\$(q '$db' \"SELECT count(*) FROM attempts AS a JOIN attempt_clients AS c ON c.attempt_id = a.id WHERE NOT EXISTS (SELECT 1 FROM client_rounds AS k WHERE k.run_id = 1 AND k.round = a.round AND k.client = c.client)\")\" = 0 ] && [ \"\$(q '$db' 'SELECT count(DISTINCT round) FROM attempts')\" -ge 2 ]"
twice=$(q "$db" "SELECT round FROM attempts WHERE run_id = 1 AND attempt = 2")
check "sim: a round (${twice:-none}) failed twice, then its third attempt committed with >= 4 included" \
  "[ -n '$twice' ] && [ \"\$(q '$db' \"SELECT group_concat(attempt) FROM attempts WHERE round = $twice ORDER BY id\")\" = 1,2 ] && [ \"\$(q '$db' \"SELECT participants >= 4 FROM rounds WHERE round = $twice\")\" = 1 ]"
check "sim: client_rounds keeps the committed attempt's rows only: 5 per round, none 'answered'" \
  "[ \"\$(q '$db' 'SELECT count(*) FROM client_rounds')\" = 50 ] && [ \"\$(q '$db' \"SELECT count(*) FROM client_rounds WHERE status NOT IN ('included', 'absent')\")\" = 0 ]"
check "sim: the completed run has no error" \
  "[ \"\$(q '$db' \"SELECT status || ' ' || coalesce(error, 'NULL') FROM runs\")\" = 'completed NULL' ]"
"$FP" sim "$T/drop.ini" --set run.seed=4 --store "$T/s4t.db" --threads 2 --quiet >/dev/null 2>&1
check "sim: the same attempts rows at --threads 2" \
  "[ -n \"\$(dump '$db')\" ] && [ \"\$(dump '$db')\" = \"\$(dump '$T/s4t.db')\" ]"
replay_exact "sim" 1 "$db"
# the readers on a version 5 store (before attempts): they read it as it
# is and leave it at version 5
cp "$db" "$T/v5.db"
sqlite3 "$T/v5.db" 'drop table attempt_clients; drop table attempts; alter table runs drop column error; pragma user_version = 5;' 2>/dev/null
"$FP" runs --store "$T/v5.db" --format csv >"$T/v5.runs" 2>&1
"$FP" metrics 1 --store "$T/v5.db" --clients --format csv >"$T/v5.clients" 2>&1
check "a version 5 store: runs and metrics --clients read it (50 client rows)" \
  "tail -1 '$T/v5.runs' | grep -q ',completed' && [ \$(tail -n +2 '$T/v5.clients' | wc -l) = 50 ]"
replay_exact "a version 5 store" 1 "$T/v5.db"
check "a version 5 store: the readers left it at version 5" "[ \"\$(q '$T/v5.db' 'pragma user_version')\" = 5 ]"

# seed 1: round 2 fails three times, and the run with it
"$FP" sim "$T/drop.ini" --set run.seed=1 --store "$T/s1.db" >"$T/s1.out" 2>"$T/s1.err"
rc=$?
db="$T/s1.db"
msg=$(sed -n 's/^fedpress: \(round [0-9]*: only .*\)$/\1/p' "$T/s1.err")
check "sim: the run whose round fails three times fails (exit 1) with the message naming it" \
  "[ $rc -eq 1 ] && [ -n \"\$msg\" ]"
check "sim: the run is 'failed' in the store with that message in runs.error" \
  "[ \"\$(q '$db' 'SELECT status FROM runs WHERE id = 1')\" = failed ] && [ \"\$(q '$db' 'SELECT error FROM runs WHERE id = 1')\" = \"\$msg\" ]"
r=$(q "$db" "SELECT rounds_done + 1 FROM runs WHERE id = 1")
check "sim: round $r's three attempts are stored, the last one's clients not answering as the message names them" \
  "[ \"\$(q '$db' \"SELECT group_concat(attempt) FROM (SELECT attempt FROM attempts WHERE round = $r ORDER BY id)\")\" = 1,2,3 ] && [ \"\$(q '$db' \"SELECT group_concat(x, '') FROM (SELECT ' ' || c.client || ' (' || c.status || ': ' || c.reason || ')' AS x FROM attempt_clients AS c WHERE c.attempt_id = (SELECT max(id) FROM attempts) AND c.status != 'answered' ORDER BY c.client)\")\" = \"\${msg#*not answering:}\" ]"
before=$(dump "$db")
"$FP" sim --resume 1 --store "$db" >"$T/s1r.out" 2>"$T/s1r.err"
rc=$?
check "sim: --resume of the failed run tries round $r again, fails the same way (exit 1), and is 'failed' with the same error" \
  "[ $rc -eq 1 ] && [ \"\$(q '$db' 'SELECT status FROM runs WHERE id = 1')\" = failed ] && [ \"\$(q '$db' 'SELECT error FROM runs WHERE id = 1')\" = \"\$msg\" ]"
check "sim: the first three attempts stay, the three of the resumed run follow them (ordered by id, the same rows)" \
  "[ \"\$(dump '$db' | head -15)\" = \"\$before\" ] && [ \"\$(dump '$db' | tail -15)\" = \"\$before\" ] && [ \"\$(q '$db' 'SELECT count(*) FROM attempts')\" = 6 ]"

# ---- b. the coordinator ----
N=4
make_keys 3
echo "3 -" >>"$T/clients.pub"
"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set data.clients=4 --set participation.sample=4 \
  --set run.rounds=5 --set run.eval_every=5 --set participation.min_updates=3 \
  --set participation.deadline=2 --dry-run >"$T/co.ini"
d="$T/co"
coord_start "$d" "$T/co.ini" --wait 30
if [ -n "$PORT" ]; then
  client_start "$d" 0
  client_start "$d" 1
  # client 2 answers after 8 s: late in attempt 1 (deadline 2 s), then
  # still owing that upload when attempts 2 and 3 start
  client_start "$d" 2 --test-slow-train 8000
  wait "$CPID"
  crc=$?
  db="$d/db"
  msg=$(sed -n 's/^fedpress coordinator: \(round 1: only .*\)$/\1/p' "$d/coord.err")
  check "coordinator: the run fails (exit 1) with the message naming round 1" \
    "[ $crc -eq 1 ] && [ -n \"\$msg\" ]"
  check "coordinator: the run is 'failed' in the store with that message in runs.error, no round committed" \
    "[ \"\$(q '$db' \"SELECT status || ' ' || rounds_done FROM runs WHERE id = 1\")\" = 'failed 0' ] && [ \"\$(q '$db' 'SELECT error FROM runs WHERE id = 1')\" = \"\$msg\" ]"
  want="1|1|2|3|0|answered|-
1|1|2|3|1|answered|-
1|1|2|3|2|late|no upload when the round closed (the deadline passed)
1|1|2|3|3|absent|not connected when sampled
1|2|2|3|0|answered|-
1|2|2|3|1|answered|-
1|2|2|3|2|absent|still sending its late upload of round 1
1|2|2|3|3|absent|not connected when sampled
1|3|2|3|0|answered|-
1|3|2|3|1|answered|-
1|3|2|3|2|absent|still sending its late upload of round 1
1|3|2|3|3|absent|not connected when sampled"
  check "coordinator: round 1's three attempts are stored, every sampled client with its status and reason" \
    "[ \"\$(dump '$db')\" = \"\$want\" ]"
  [ "$(dump "$db")" = "$want" ] || dump "$db"
  check "coordinator: client_rounds and rounds hold nothing of the failed round" \
    "[ \"\$(q '$db' 'SELECT count(*) FROM client_rounds') \$(q '$db' 'SELECT count(*) FROM rounds')\" = '0 0' ]"
  # the SQL of docs/deployment.md, as written: its store and its run
  awk '/tests\/e2e_attempts.sh runs the block below/ { m = 1; next }
       m == 1 && /^```/ { m = 2; next }
       m == 2 && /^```/ { exit }
       m == 2 { print }' "$ROOT/docs/deployment.md" >"$T/doc.sh"
  check "docs/deployment.md has the marked block of sqlite3 queries" \
    "[ \$(grep -c 'sqlite3 ' '$T/doc.sh') -ge 1 ] && grep -q 'runs.db' '$T/doc.sh' && grep -q '= 7' '$T/doc.sh'"
  sed -i "s#runs\.db#'$db'#g; s#= 7\\b#= 1#g" "$T/doc.sh"
  bash "$T/doc.sh" >"$T/doc.out" 2>&1
  # -column pads each line to the widest reason
  ts='20[0-9-]*T[0-9:.]*Z'
  check "the documented query lists the 6 rows of clients not answering, attempt by attempt, with reasons" \
    "[ \$(grep -cE '^1 +1 +$ts +2/3 +2 +late +no upload when the round closed \\(the deadline passed\\) *$' '$T/doc.out') = 1 ] && [ \$(grep -cE '^1 +[123] +$ts +2/3 +3 +absent +not connected when sampled *$' '$T/doc.out') = 3 ] && [ \$(grep -cE '^1 +[23] +$ts +2/3 +2 +absent +still sending its late upload of round 1 *$' '$T/doc.out') = 2 ] && [ \$(grep -cE '^1 +' '$T/doc.out') = 6 ]"
  check "the documented query shows the run 'failed' and why" \
    "grep -qxF \"failed: \$msg\" '$T/doc.out'"
  [ "$fails" -eq 0 ] || cat "$T/doc.out"

  # every client answering now: --resume-or-start completes the same run
  for i in 0 1 2; do kill "${CL[$i]}" 2>/dev/null; wait "${CL[$i]}" 2>/dev/null; done
  coord_start "$d" "$T/co.ini" --wait 30 --resume-or-start
  if [ -n "$PORT" ]; then
    for i in 0 1 2; do client_start "$d" "$i"; done
    wait "$CPID"
    crc=$?
    check "coordinator: --resume-or-start continues run 1 and completes it (exit 0), its error cleared" \
      "[ $crc -eq 0 ] && grep -q 'continuing run 1 of .*failed' '$d/coord.err' && [ \"\$(q '$db' \"SELECT count(*) || ' ' || status || ' ' || rounds_done || ' ' || coalesce(error, 'NULL') FROM runs\")\" = '1 completed 5 NULL' ]"
    check "coordinator: round 1 committed with clients 0, 1, 2 included; its three failed attempts kept" \
      "[ \"\$(q '$db' \"SELECT group_concat(client || status) FROM (SELECT client, status FROM client_rounds WHERE round = 1 ORDER BY client)\")\" = '0included,1included,2included,3absent' ] && [ \"\$(dump '$db')\" = \"\$want\" ]"
    replay_exact "coordinator (failed attempts, then resumed)" 1 "$db"
  else
    bad "coordinator: the resumed coordinator listens"
  fi
else
  bad "coordinator: listening"
fi
[ "$fails" -eq 0 ] || { tail -5 "$d/coord.err"; }

finish e2e_attempts
