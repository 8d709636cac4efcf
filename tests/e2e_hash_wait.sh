#!/usr/bin/env bash
# End-to-end test of the coordinator's uploads hashed on the thread pool
# (issue 14, "Performance"): an exchange that closes while hashes still run
# waits for them before it includes, retries or moves on, and stores the
# hashes of the bytes it aggregated.
#
# A coordinator whose pool hashes take 2 s longer (--test-slow-hash, test
# only) and 3 clients, client 2 training 2.5 s longer every round, on the
# quadratic (d = 20,000: 80 KB uploads, large enough to be hashed on the
# pool) with a 1 s deadline and min_updates 2: round 1 closes at its
# deadline with the hashes of clients 0 and 1 still running (later rounds
# close when every slot is settled, with a hash running). Checks that the
# run completes, that round 1 includes 0 and 1 and has 2 late, that it
# lasted until the hashes were done (not the 1 s deadline), and that `sim
# --replay` of the run finds every included upload's SHA-256, every
# round's metrics and the final model exact.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_hash_wait_XXXXXX)
PIDS=()
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
trap end_jobs EXIT
N=3
make_keys $N

"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set data.clients=$N --set data.dim=20000 \
  --set participation.sample=$N --set run.rounds=3 --set run.eval_every=1 \
  --set participation.deadline=1 --set participation.min_updates=2 \
  --set participation.wait_after_min=60 --dry-run >"$T/s.ini" 2>"$T/dry.err"
check "the scenario builds" "[ -s '$T/s.ini' ]"

d="$T/run"
if coord_start "$d" "$T/s.ini" --wait 30 --test-slow-hash 2 && [ -n "$PORT" ]; then
  client_start "$d" 0
  client_start "$d" 1
  client_start "$d" 2 --test-slow-train 2500
  wait "$CPID"
  rc=$?
  check "the coordinator completes the run (exit 0)" "[ $rc -eq 0 ]"
  for i in 0 1 2; do
    wait "${CL[$i]}"
    check "client $i completes the run (exit 0)" "[ $? -eq 0 ]"
  done
  st=$(q "$d/db" "select group_concat(client || ':' || status, ' ') from (select client, status from client_rounds where run_id = 1 and round = 1 order by client)")
  check "round 1: clients 0 and 1 included, client 2 late (got: $st)" \
    "[ '$st' = '0:included 1:included 2:late' ]"
  why=$(q "$d/db" "select reason from client_rounds where run_id = 1 and round = 1 and client = 2")
  check "round 1 closed at its deadline (client 2's reason: $why)" \
    "echo '$why' | grep -q 'deadline'"
  ms=$(q "$d/db" "select cast(wall_ms as integer) from rounds where run_id = 1 and round = 1")
  check "round 1 waited for its hashes: ${ms:-?} ms >= 1900 (the deadline is 1 s, the hashes 2 s)" \
    "[ '${ms:-0}' -ge 1900 ]"
  n=$(q "$d/db" "select count(*) from client_rounds where run_id = 1 and status = 'included' and length(upload_sha256) = 64")
  check "every included upload has its SHA-256 (${n:-0} of them, at least 6)" "[ '${n:-0}' -ge 6 ]"
  "$FP" sim --replay 1 --store "$d/db" --quiet >"$d/rp.out" 2>"$d/rp.err"
  rc=$?
  check "sim --replay of the run is exact: every included upload's SHA-256, every round, the model" \
    "[ $rc -eq 0 ] && grep -q '^replay of run 1: exact: ' '$d/rp.out'"
  grep -q 'exact' "$d/rp.out" || { cat "$d/rp.out" "$d/rp.err"; tail -5 "$d/coord.err"; }
else
  bad "the coordinator listens"
  tail -5 "$d/coord.err"
fi
finish e2e_hash_wait
