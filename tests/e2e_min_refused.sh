#!/usr/bin/env bash
# End-to-end test: an upload the core refuses (not finite) never counts
# toward [participation] min_updates (issue 14: a refused upload is "never
# aggregated"; min_updates is the number of updates a round aggregates).
#
# 3 clients, S = 3, min_updates = 3 (the default: all of S), the quadratic;
# client 1 sends a NaN upload in every attempt of round 2 (a hidden test
# hook). Round 2 then has 2 valid uploads of the 3 it needs: each attempt
# fails, is stored with client 1 'refused' and the core's reason, and after
# the third the run fails, naming client 1 and why. Before, the refused
# upload counted as "in": round 2 committed with 2 participants although
# min_updates was 3. A second run with min_updates = 2 commits round 2
# with the other two (the refusal alone does not fail a round that has its
# minimum), and `sim --replay` of it is exact. wait_after_min = 60 keeps
# every round open until all three answered (with 0, a round can close the
# moment min_updates uploads have come, before each is checked, and a
# refused one among them fails that attempt: docs/daemons.md).
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_min_refused_XXXXXX)
PIDS=()
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
trap end_jobs EXIT
N=3
make_keys $N

scenario() { # FILE MIN
  "$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set data.clients=$N \
    --set participation.sample=$N --set run.rounds=3 --set participation.deadline=20 \
    --set participation.min_updates="$2" --set participation.wait_after_min=60 \
    --dry-run >"$1" 2>"$T/dry.err"
}
scenario "$T/min3.ini" 3
scenario "$T/min2.ini" 2
check "the scenarios build" "[ -s '$T/min3.ini' ] && [ -s '$T/min2.ini' ]"

# 1. min_updates = 3: round 2 can never have its 3 valid uploads
d="$T/min3"
if coord_start "$d" "$T/min3.ini" --wait 30 && [ -n "$PORT" ]; then
  client_start "$d" 0
  client_start "$d" 1 --test-bad-upload 2:nan
  client_start "$d" 2
  wait "$CPID"
  rc=$?
  check "min 3: the coordinator fails the run (exit 1; got $rc)" "[ $rc -eq 1 ]"
  check "min 3: round 1 is committed, round 2 is not" \
    "[ \"\$(q '$d/db' 'select group_concat(round) from rounds where run_id = 1')\" = 1 ]"
  att=$(q "$d/db" "select group_concat(a.attempt || ':' || a.uploads || '/' || a.min_updates, ' ') from (select * from attempts where run_id = 1 and round = 2 order by attempt) a")
  check "min 3: round 2's three attempts are stored with 2 valid uploads of 3 (got: $att)" \
    "[ '$att' = '1:2/3 2:2/3 3:2/3' ]"
  st=$(q "$d/db" "select group_concat(status, ' ') from (select ac.status from attempt_clients ac join attempts a on a.id = ac.attempt_id where a.run_id = 1 and a.round = 2 and ac.client = 1 order by a.attempt)")
  check "min 3: client 1 is 'refused' in each attempt (got: $st)" "[ '$st' = 'refused refused refused' ]"
  why=$(q "$d/db" "select ac.reason from attempt_clients ac join attempts a on a.id = ac.attempt_id where a.run_id = 1 and a.round = 2 and ac.client = 1 and a.attempt = 3")
  check "min 3: with the core's reason ($why)" "echo \"\$why\" | grep -qi 'malformed upload'"
  err=$(q "$d/db" "select status || ': ' || error from runs where id = 1")
  check "min 3: the run is 'failed' and its error names client 1, refused ($err)" \
    "echo \"\$err\" | grep -q '^failed: round 2: only 2 of the 3 uploads.*1 (refused'"
else
  bad "min 3: the coordinator listens"
fi

# 2. min_updates = 2: round 2 commits with clients 0 and 2
d="$T/min2"
if coord_start "$d" "$T/min2.ini" --wait 30 && [ -n "$PORT" ]; then
  client_start "$d" 0
  client_start "$d" 1 --test-bad-upload 2:nan
  client_start "$d" 2
  wait "$CPID"
  rc=$?
  check "min 2: the coordinator completes the run (exit 0; got $rc)" "[ $rc -eq 0 ]"
  st=$(q "$d/db" "select group_concat(client || ':' || status, ' ') from (select client, status from client_rounds where run_id = 1 and round = 2 order by client)")
  check "min 2: round 2 includes 0 and 2, refuses 1 (got: $st)" \
    "[ '$st' = '0:included 1:refused 2:included' ]"
  check "min 2: no failed attempt" "[ \"\$(q '$d/db' 'select count(*) from attempts')\" = 0 ]"
  check "min 2: sim --replay of the run is exact" \
    "'$FP' sim --replay 1 --store '$d/db' --quiet 2>&1 | grep -q '^replay of run 1: exact'"
else
  bad "min 2: the coordinator listens"
fi
# 3. min_updates = 2, wait_after_min = 0: a round closes the moment its
# second valid upload comes. Client 2 trains 0.8 s longer and client 1
# sends a NaN in round 1, so client 1's NaN comes second in round 1:
# refused when it comes, it does not close the round, which waits for
# client 2 and commits with 0 and 2. (When the refusal came only as the
# exchange closed, round 1 closed on 0 and 1's uploads, fell short of 2
# valid ones, and every attempt failed so: client 2, late, was absent from
# the retries.) Later rounds close on 0 and 1.
"$FP" sim "$T/min2.ini" --set participation.wait_after_min=0 --dry-run >"$T/now.ini"
d="$T/now"
if coord_start "$d" "$T/now.ini" --wait 30 && [ -n "$PORT" ]; then
  client_start "$d" 0
  client_start "$d" 1 --test-bad-upload 1:nan
  client_start "$d" 2 --test-slow-train 800
  wait "$CPID"
  rc=$?
  check "wait 0: the coordinator completes the run (exit 0; got $rc)" "[ $rc -eq 0 ]"
  st=$(q "$d/db" "select group_concat(client || ':' || status, ' ') from (select client, status from client_rounds where run_id = 1 and round = 1 order by client)")
  check "wait 0: round 1 waits for client 2 and includes 0 and 2, refuses 1 (got: $st)" \
    "[ '$st' = '0:included 1:refused 2:included' ]"
  check "wait 0: no failed attempt" "[ \"\$(q '$d/db' 'select count(*) from attempts')\" = 0 ]"
  check "wait 0: the refusal is logged when the upload comes, naming client 1" \
    "grep -q \"round 1: client 1 (key [0-9a-f]*, 127.0.0.1:[0-9]*)'s upload refused: malformed upload\" '$d/coord.err'"
  check "wait 0: sim --replay of the run is exact" \
    "'$FP' sim --replay 1 --store '$d/db' --quiet 2>&1 | grep -q '^replay of run 1: exact'"
else
  bad "wait 0: the coordinator listens"
fi
finish e2e_min_refused
