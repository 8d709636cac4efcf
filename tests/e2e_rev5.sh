#!/usr/bin/env bash
# End-to-end test (review of the min_updates / refused-upload change): an
# upload the core has already refused does not count toward min_updates in
# the exchange's closing rule either, not only when the exchange is
# finished.
#
# 3 clients, S = 3, min_updates = 2, wait_after_min = 0 (the round closes
# the moment min_updates uploads are in), the quadratic (uploads of a few
# bytes: each is decoded and added the moment it comes, in slot order).
# Client 0 sends a NaN upload in every attempt of round 1, client 1 a
# valid one at once, client 2 a valid one 3 s later (--test-slow-train).
# Client 0's upload is refused as soon as it is added (slot 0 comes
# first), so only client 1's counts until client 2's comes: the round
# closes then with 2 valid uploads and commits them. Before, the refused
# upload counted toward the closing rule: the round closed with clients 0
# and 1, found one valid upload of the 2 it needs, and failed; each of the
# three attempts did so and the run failed, although client 2 answered in
# time every attempt.
#
# rewait: S = 5, min_updates = 3, wait_after_min = 5: clients 1 and 2 send
# NaN uploads and client 3 a valid one at once, client 0 a valid one after
# 2 s, client 4 after 8 s. The first three start wait_after_min (none can
# be decoded before client 0's, slot 0); client 0's lets them be decoded:
# two are refused, 2 valid uploads of 3 are left, and wait_after_min waits
# again for a third valid one, which client 4 brings: the round commits 0,
# 3 and 4. Before, the wait started by the refused uploads closed the round
# at 5 s without client 4, the attempt failed, and so did the run.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_rev5_XXXXXX)
PIDS=()
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
trap end_jobs EXIT
N=3
make_keys $N

"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set data.clients=$N \
  --set participation.sample=$N --set run.rounds=1 --set participation.deadline=20 \
  --set participation.min_updates=2 --set participation.wait_after_min=0 \
  --dry-run >"$T/s.ini" 2>"$T/dry.err"
check "the scenario builds" "[ -s '$T/s.ini' ]"

d="$T/early"
if coord_start "$d" "$T/s.ini" --wait 30 && [ -n "$PORT" ]; then
  client_start "$d" 0 --test-bad-upload 1:nan
  client_start "$d" 1
  client_start "$d" 2 --test-slow-train 3000
  wait "$CPID"
  rc=$?
  check "early: the coordinator completes the run (exit 0; got $rc)" "[ $rc -eq 0 ]"
  st=$(q "$d/db" "select group_concat(client || ':' || status, ' ') from (select client, status from client_rounds where run_id = 1 and round = 1 order by client)")
  check "early: round 1 refuses 0 and includes 1 and 2 (got: $st)" \
    "[ '$st' = '0:refused 1:included 2:included' ]"
  n=$(q "$d/db" "select count(*) from attempts where run_id = 1")
  check "early: no failed attempt (got $n)" "[ '$n' = 0 ]"
  check "early: sim --replay of the run is exact" \
    "'$FP' sim --replay 1 --store '$d/db' --quiet 2>&1 | grep -q '^replay of run 1: exact'"
else
  bad "early: the coordinator listens"
fi

N=5
rm -f "$T"/c*.key "$T/coord.key" # new keys and clients.pub for 5 clients
make_keys $N
"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set data.clients=$N \
  --set participation.sample=$N --set run.rounds=1 --set participation.deadline=30 \
  --set participation.min_updates=3 --set participation.wait_after_min=5 \
  --dry-run >"$T/s5.ini" 2>"$T/dry.err"
check "rewait: the scenario builds" "[ -s '$T/s5.ini' ]"
d="$T/rewait"
if coord_start "$d" "$T/s5.ini" --wait 30 && [ -n "$PORT" ]; then
  client_start "$d" 0 --test-slow-train 2000
  client_start "$d" 1 --test-bad-upload 1:nan
  client_start "$d" 2 --test-bad-upload 1:nan
  client_start "$d" 3
  client_start "$d" 4 --test-slow-train 8000
  wait "$CPID"
  rc=$?
  check "rewait: the coordinator completes the run (exit 0; got $rc)" "[ $rc -eq 0 ]"
  st=$(q "$d/db" "select group_concat(client || ':' || status, ' ') from (select client, status from client_rounds where run_id = 1 and round = 1 order by client)")
  check "rewait: round 1 includes 0, 3 and 4 and refuses 1 and 2 (got: $st)" \
    "[ '$st' = '0:included 1:refused 2:refused 3:included 4:included' ]"
  n=$(q "$d/db" "select count(*) from attempts where run_id = 1")
  check "rewait: no failed attempt (got $n)" "[ '$n' = 0 ]"
else
  bad "rewait: the coordinator listens"
fi
finish e2e_rev5
