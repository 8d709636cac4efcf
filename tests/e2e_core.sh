#!/usr/bin/env bash
# End-to-end checks of the core as a protocol (issue 13): every upload's
# SHA-256 in the store (schema 4, upgraded in place from 3), the same at
# any thread count, and the documented query that finds where two runs part.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_core_XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/e2e_lib.sh"
q() { sqlite3 "$1" "$2" 2>/dev/null; }
Q="$ROOT/scenarios/scaffold-quadratic.ini"

"$FP" sim "$Q" --set run.rounds=3 --store "$T/a.db" --threads 1 --quiet >/dev/null 2>&1
check "schema version 6" "[ \"\$(q '$T/a.db' 'pragma user_version')\" = 6 ]"
rows=$(q "$T/a.db" "select count(*) from client_rounds where run_id = 1")
check "every client round has a 64-hex upload_sha256" \
  "[ -n '$rows' ] && [ '$rows' -gt 0 ] && [ \"\$(q '$T/a.db' \"select count(*) from client_rounds where run_id = 1 and upload_sha256 glob '$(printf '[0-9a-f]%.0s' $(seq 64))'\")\" = '$rows' ]"
check "uploads differ from each other (no constant hash)" \
  "[ \"\$(q '$T/a.db' 'select count(distinct upload_sha256) from client_rounds where run_id = 1')\" = '$rows' ]"

# the same run at 2 threads: the same upload bytes, client by client
"$FP" sim "$Q" --set run.rounds=3 --store "$T/a.db" --threads 2 --quiet >/dev/null 2>&1
h1=$(q "$T/a.db" 'select group_concat(upload_sha256) from (select upload_sha256 from client_rounds where run_id = 1 order by round, client)')
h2=$(q "$T/a.db" 'select group_concat(upload_sha256) from (select upload_sha256 from client_rounds where run_id = 2 order by round, client)')
check "same hashes at 1 and 2 threads" "[ \${#h1} -ge 64 ] && [ '$h1' = '$h2' ]"

# docs/store.md query 14: no row for runs 1 and 2; a changed global step
# leaves round 1's uploads (made from the same initial model) as they were
# and changes round 2's
first_diff() {
  q "$T/a.db" "SELECT a.round, a.client FROM client_rounds AS a LEFT JOIN client_rounds AS b ON b.run_id = $2 AND b.round = a.round AND b.client = a.client WHERE a.run_id = $1 AND b.upload_sha256 IS NOT a.upload_sha256 ORDER BY a.round, a.client LIMIT 1;"
}
check "query 14: runs 1 and 2 never differ (and have hashes)" \
  "[ \${#h2} -ge 64 ] && [ -z \"\$(first_diff 1 2)\" ] && [ \"\$(q '$T/a.db' 'select count(*) from runs')\" = 2 ]"
"$FP" sim "$Q" --set run.rounds=3 --set algorithm.lr_global=0.5 --store "$T/a.db" --quiet >/dev/null 2>&1
first=$(q "$T/a.db" "select min(client) from client_rounds where run_id = 1 and round = 2")
check "query 14: lr_global changed: the first difference is round 2's first client" \
  "[ -n '$first' ] && [ \"\$(first_diff 1 3)\" = '2|$first' ]"

# metrics --clients shows the column, the store's values
"$FP" metrics 1 --store "$T/a.db" --clients --format csv >"$T/mc.csv"
check "metrics --clients csv: upload_sha256 column, the store's values" \
  "head -1 '$T/mc.csv' | grep -q ',upload_sha256,status,reason\$' && [ \"\$(tail -n +2 '$T/mc.csv' | cut -d, -f7)\" = \"\$(q '$T/a.db' 'select upload_sha256 from client_rounds where run_id = 1 order by round, client')\" ]"

# a version 3 store (no upload_sha256) is upgraded in place: old rows NULL,
# the next run's rows hashed, the first run's results unchanged
"$FP" sim "$Q" --set run.rounds=2 --store "$T/v3.db" --quiet >"$T/o1" 2>&1
sqlite3 "$T/v3.db" 'drop table attempt_clients; drop table attempts; alter table runs drop column error; alter table client_rounds drop column upload_sha256; alter table client_rounds drop column status; alter table client_rounds drop column reason; pragma user_version = 3;'
"$FP" metrics 1 --store "$T/v3.db" --clients --format csv >"$T/v3.csv" 2>&1; rc=$?
check "a reader lists a version 3 store's clients without upgrading it" \
  "[ $rc -eq 0 ] && [ \$(wc -l <'$T/v3.csv') -gt 1 ] && [ \"\$(q '$T/v3.db' 'pragma user_version')\" = 3 ]"
"$FP" sim "$Q" --set run.rounds=2 --store "$T/v3.db" --quiet >"$T/o2" 2>&1; rc=$?
check "a writer upgrades it to 6: old rows NULL, new rows hashed, same model" \
  "[ $rc -eq 0 ] && [ \"\$(q '$T/v3.db' 'pragma user_version')\" = 6 ] && [ \"\$(q '$T/v3.db' 'select count(*) from client_rounds where run_id = 1 and upload_sha256 is not null')\" = 0 ] && [ \"\$(q '$T/v3.db' 'select count(*) from client_rounds where run_id = 2 and upload_sha256 is null')\" = 0 ] && [ \"\$(grep 'model sha256' '$T/o1')\" = \"\$(grep 'model sha256' '$T/o2')\" ]"

# a model that overflows is refused by the broadcast's encoder, with the
# reason (a guard: the message was the client's before broadcasts were encoded)
"$FP" sim "$Q" --set algorithm.lr_global=1e30 --set run.rounds=5 --store "$T/dv.db" --quiet >/dev/null 2>"$T/dv.err"; rc=$?
check "a diverging run fails in round 3, saying training diverged" \
  "[ $rc -eq 1 ] && grep -q '^fedpress: round 3: .*training diverged' '$T/dv.err' && [ \"\$(q '$T/dv.db' 'select status from runs')\" = failed ]"

finish e2e_core
