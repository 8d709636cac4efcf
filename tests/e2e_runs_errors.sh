#!/usr/bin/env bash
# End-to-end test of what `fedpress runs` and `fedpress metrics` print of
# schema 6's failures (runs.error, attempts, attempt_clients), every value
# compared with the store's own rows as sqlite3 reads them:
#  a. runs: a failed run's reason on a line under its row (table), as a last
#     column (csv) and a last key (json), the columns before them unchanged;
#  b. metrics RUN --attempts: every sampled client of every failed attempt,
#     with its status and reason, in the three formats; the rounds and
#     clients listings say on stderr (only) that a run has failed attempts;
#     a damaged attempt_clients row is refused by --attempts and only a
#     warning for the rounds listing;
#  c. a version 5 store (before schema 6): runs and metrics read it as before,
#     without the error column or key, --attempts lists nothing and says why,
#     and the store stays at version 5;
#  d. the help text names what they print.
# The runs are tests/e2e_attempts.sh's simulator runs: the quadratic with
# 30 % dropout and min_updates 4, seed 4 (rounds fail once or twice, then
# commit) and seed 1 (round 2 fails three times, and the run with it).
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_runs_errors_XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
. "$(dirname "$0")/e2e_lib.sh"
q() { sqlite3 -readonly "$1" "$2" 2>/dev/null; }
# same_json FILE DB SQL: fedpress's JSON output in FILE is the rows
# `sqlite3 -json DB SQL` gives, with the same keys in the same order (the
# SQL names its columns as fedpress's keys); same_csv FILE DB SQL: the CSV
# in FILE is those rows under a header of those names, NULL an empty
# field. A REAL is compared as fedpress prints it, with 9 significant
# digits (%.9g).
same_rows() {
  python3 - "$1" "$2" "$(sqlite3 -readonly -json "$3" "$4")" <<'EOF'
import csv, json, sys
fmt, path, want = sys.argv[1], sys.argv[2], json.loads(sys.argv[3] or "[]")
num = lambda v: float("%.9g" % v) if isinstance(v, float) else v
if fmt == "json":
    got = json.load(open(path))
    assert [list(r) for r in got] == [list(r) for r in want], "keys"
    assert [[num(v) for v in r.values()] for r in got] == [[num(v) for v in r.values()] for r in want], (got, want)
else:
    text = lambda v: "" if v is None else "%.9g" % v if isinstance(v, float) else str(v)
    rows = list(csv.reader(open(path, newline="")))
    assert not want or rows[0] == list(want[0]), ("header", rows[0])
    assert rows[1:] == [[text(v) for v in r.values()] for r in want], (rows[1:], want)
EOF
}
same_json() { same_rows json "$@"; }
same_csv() { same_rows csv "$@"; }

"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set run.rounds=10 --set participation.min_updates=4 \
  --set participation.dropout=0.3 --set participation.deadline=10 --dry-run >"$T/drop.ini"
db="$T/r.db"
"$FP" sim "$T/drop.ini" --set run.seed=4 --store "$db" --quiet >/dev/null 2>&1
"$FP" sim "$T/drop.ini" --set run.seed=1 --store "$db" --quiet >/dev/null 2>&1
"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set run.rounds=3 --set 'run.name=plain, "q"' \
  --store "$db" --quiet >/dev/null 2>&1
check "the store: run 1 completed with failed attempts, run 2 failed with a reason and attempts, run 3 completed with neither" \
  "[ \"\$(q '$db' \"SELECT group_concat(x, ' ') FROM (SELECT id || status || (error IS NOT NULL) || (SELECT count(*) > 0 FROM attempts WHERE run_id = runs.id) AS x FROM runs ORDER BY id)\")\" = '1completed01 2failed11 3completed00' ]"

# ---- a. runs ----
old_header='id,name,algorithm,compressor,rounds_done,rounds_planned,final_accuracy,final_loss,uplink_bytes,status'
run_cols="id, name, algorithm, coalesce(compressor, '-') AS compressor, rounds_done, rounds_planned,
  final_test_accuracy AS final_accuracy, final_test_loss AS final_loss, uplink_bytes, status"
# the table's rows, as docs/store.md and the help describe them: the name
# column as wide as the longest name (at least 4), '-' for no value
w=$(q "$db" "SELECT max(4, min(80, max(length(name)))) FROM runs")
table_rows() {
  q "$1" "SELECT printf('%5d  %-*s  %-10s  %-12s  %5d/%-5d  %9s  %10s  %14d  %s', id, $w, name, algorithm,
      coalesce(compressor, '-'), rounds_done, rounds_planned,
      CASE WHEN final_test_accuracy IS NULL THEN '-' ELSE printf('%.4f', final_test_accuracy) END,
      CASE WHEN final_test_loss IS NULL THEN '-' ELSE printf('%.6g', final_test_loss) END,
      uplink_bytes, status) || $2 FROM runs ORDER BY id"
}
"$FP" runs --store "$db" >"$T/runs.txt" 2>"$T/runs.err"; rc=$?
printf '%5s  %-*s  %-10s  %-12s  %11s  %9s  %10s  %14s  %s\n' id "$w" name algorithm compressor rounds \
  final_acc final_loss uplink_bytes status >"$T/want.txt"
table_rows "$db" "CASE WHEN error IS NULL THEN '' ELSE char(10) || '       error: ' || error END" >>"$T/want.txt"
check "runs (table): exit 0; the columns as before, the failed run's runs.error on a line of its own under its row" \
  "[ $rc -eq 0 ] && [ -n \"\$(q '$db' 'SELECT error FROM runs WHERE id = 2')\" ] && cmp -s '$T/runs.txt' '$T/want.txt'"
cmp -s "$T/runs.txt" "$T/want.txt" || diff "$T/want.txt" "$T/runs.txt" | head -10
"$FP" runs --store "$db" --format csv >"$T/runs.csv"; rc=$?
check "runs --format csv: exit 0, the header as before with ',error' last" \
  "[ $rc -eq 0 ] && [ \"\$(head -1 '$T/runs.csv')\" = '$old_header,error' ]"
check "runs --format csv: every row the store's, the error column its runs.error (empty for none)" \
  "same_csv '$T/runs.csv' '$db' \"SELECT $run_cols, error FROM runs ORDER BY id\""
"$FP" runs --store "$db" --format json >"$T/runs.json"; rc=$?
check "runs --format json: exit 0, every run the store's, \"error\" last: its runs.error or null" \
  "[ $rc -eq 0 ] && same_json '$T/runs.json' '$db' \"SELECT $run_cols, error FROM runs ORDER BY id\""
# a reason with a line break, a comma and quotes (as a store may hold one):
# one line in the table, quoted in csv, escaped in json
cp "$db" "$T/odd.db"
sqlite3 "$T/odd.db" "UPDATE runs SET error = 'two' || char(10) || 'lines, \"quoted\"' WHERE id = 2"
"$FP" runs --store "$T/odd.db" >"$T/odd.txt"
"$FP" runs --store "$T/odd.db" --format csv >"$T/odd.csv"
"$FP" runs --store "$T/odd.db" --format json >"$T/odd.json"
check "runs: a reason with a line break, comma and quotes: one table line (break as a space), csv and json give it back whole" \
  "grep -qxF '       error: two lines, \"quoted\"' '$T/odd.txt' && [ \$(wc -l <'$T/odd.txt') -eq 5 ] && same_csv '$T/odd.csv' '$T/odd.db' \"SELECT $run_cols, error FROM runs ORDER BY id\" && same_json '$T/odd.json' '$T/odd.db' \"SELECT $run_cols, error FROM runs ORDER BY id\""

# ---- b. metrics RUN --attempts ----
att_cols="a.round, a.attempt, a.closed_at, a.uploads, a.min_updates, c.client, c.status, c.reason"
att_from="FROM attempts AS a JOIN attempt_clients AS c ON c.attempt_id = a.id"
for run in 1 2; do
  "$FP" metrics $run --store "$db" --attempts >"$T/a$run.txt" 2>"$T/a$run.err"; rc=$?
  {
    printf '%6s  %7s  %-24s  %11s  %8s  %-8s  %s\n' round attempt closed_at uploads/min client status reason
    q "$db" "SELECT printf('%6d  %7d  %-24s  %5d/%-5d  %8d  %-8s  %s', a.round, a.attempt, a.closed_at,
        a.uploads, a.min_updates, c.client, c.status, coalesce(c.reason, '')) $att_from
      WHERE a.run_id = $run ORDER BY a.id, c.client"
  } >"$T/want$run.txt"
  n=$(q "$db" "SELECT count(*) $att_from WHERE a.run_id = $run")
  check "metrics $run --attempts (table): exit 0, the $n attempt_clients rows of its attempts as they closed, each with round, attempt, time, uploads/min_updates, client, status, reason" \
    "[ $rc -eq 0 ] && [ $n -ge 5 ] && cmp -s '$T/a$run.txt' '$T/want$run.txt' && [ ! -s '$T/a$run.err' ]"
  cmp -s "$T/a$run.txt" "$T/want$run.txt" || diff "$T/want$run.txt" "$T/a$run.txt" | head -6
  rows="SELECT $att_cols $att_from WHERE a.run_id = $run ORDER BY a.id, c.client"
  "$FP" metrics $run --store "$db" --attempts --format csv >"$T/a$run.csv"; rc=$?
  check "metrics $run --attempts --format csv: exit 0, header and rows the store's (reason empty for answered)" \
    "[ $rc -eq 0 ] && [ \"\$(head -1 '$T/a$run.csv')\" = round,attempt,closed_at,uploads,min_updates,client,status,reason ] && same_csv '$T/a$run.csv' '$db' \"$rows\""
  "$FP" metrics $run --store "$db" --attempts --format json >"$T/a$run.json"; rc=$?
  check "metrics $run --attempts --format json: exit 0, the store's rows (reason null for answered)" \
    "[ $rc -eq 0 ] && same_json '$T/a$run.json' '$db' \"$rows\""
done
check "metrics 2 --attempts: the failed run's last attempt's clients not answering are the ones its runs.error names" \
  "[ \"\$(q '$db' 'SELECT error FROM runs WHERE id = 2' | sed 's/.*not answering://')\" = \"\$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); m=max(x[\"attempt\"] for x in r); print(\"\".join(\" %d (%s: %s)\" % (x[\"client\"], x[\"status\"], x[\"reason\"]) for x in r if x[\"attempt\"]==m and x[\"status\"]!=\"answered\"))' '$T/a2.json')\" ]"
"$FP" metrics 3 --store "$db" --attempts --format csv >"$T/a3.csv" 2>"$T/a3.err"; rc=$?
check "metrics 3 --attempts (no failed attempts): exit 0, the header alone" \
  "[ $rc -eq 0 ] && [ \$(wc -l <'$T/a3.csv') -eq 1 ]"
# an edited or damaged row is refused, not read as another client
cp "$db" "$T/bad.db"
sqlite3 "$T/bad.db" "UPDATE attempt_clients SET client = -1 WHERE rowid = (SELECT min(rowid) FROM attempt_clients)"
"$FP" metrics 1 --store "$T/bad.db" --attempts >/dev/null 2>"$T/e"; rc=$?
check "metrics --attempts on an attempt_clients row with client -1: exit 1 naming the table, the round and the client" \
  "[ $rc -eq 1 ] && grep -q \"run 1 has a attempt_clients row with round '\$(q '$db' 'SELECT round FROM attempts WHERE id = 1')' and client '-1'\" '$T/e'"
"$FP" metrics 1 --store "$T/bad.db" --format csv >"$T/bad.csv" 2>"$T/e"; rc=$?
check "metrics (rounds) on that store: exit 0 and its 10 rounds; the hint a warning naming the row" \
  "[ $rc -eq 0 ] && [ \$(wc -l <'$T/bad.csv') -eq 11 ] && grep -q \"^fedpress: warning: counting the run's failed attempts: .*attempt_clients row with round '.*' and client '-1'\" '$T/e'"
"$FP" metrics 1 --store "$db" --attempts --clients >/dev/null 2>"$T/e"; rc=$?
check "metrics --attempts with --clients: a usage error (exit 2) saying to give one" "[ $rc -eq 2 ] && grep -q -- '--attempts lists the failed attempts, --clients and --client the committed rounds: give one of them' '$T/e'"

# the hint: on stderr only, once, with the store's numbers
hint=$(q "$db" "SELECT 'fedpress: note: run 1 has ' || count(*) || ' failed attempts (below [participation] min_updates) in ' || count(DISTINCT round) || ' rounds, ' || min(round) || ' to ' || max(round) || ', not listed here: see ''fedpress metrics 1 --attempts --store $db''' FROM attempts WHERE run_id = 1")
for f in table csv json; do
  "$FP" metrics 1 --store "$db" --format $f >"$T/m.$f" 2>"$T/m.$f.err"; rc=$?
  check "metrics 1 --format $f: exit 0, stderr the one line saying how many failed attempts in which rounds, and where to see them" \
    "[ $rc -eq 0 ] && [ \"\$(cat '$T/m.$f.err')\" = \"\$hint\" ]"
done
check "metrics 1: stdout as before the hint: $(q "$db" 'SELECT rounds_done FROM runs WHERE id = 1') rounds (table, csv, json)" \
  "[ \$(wc -l <'$T/m.table') -eq 11 ] && [ \$(wc -l <'$T/m.csv') -eq 11 ] && python3 -c 'import json,sys; assert len(json.load(open(sys.argv[1]))) == 10' '$T/m.json' && [ \"\$(tail -n +2 '$T/m.csv' | cut -d, -f1,5,7)\" = \"\$(q '$db' \"SELECT round || ',' || uplink_bytes || ',' || participants FROM rounds WHERE run_id = 1 ORDER BY round\")\" ]"
"$FP" metrics 2 --store "$db" --clients --format csv >/dev/null 2>"$T/e"; rc=$?
check "metrics 2 --clients: the hint too (one failed round, 3 attempts)" \
  "[ $rc -eq 0 ] && [ \"\$(cat '$T/e')\" = \"fedpress: note: run 2 has 3 failed attempts (below [participation] min_updates) in round \$(q '$db' 'SELECT rounds_done + 1 FROM runs WHERE id = 2'), not listed here: see 'fedpress metrics 2 --attempts --store $db'\" ]"
"$FP" metrics 3 --store "$db" >/dev/null 2>"$T/e"; rc=$?
check "metrics 3 (no failed attempts): no hint, stderr empty" "[ $rc -eq 0 ] && [ ! -s '$T/e' ]"

# ---- c. a version 5 store ----
cp "$db" "$T/v5.db"
sqlite3 "$T/v5.db" 'drop table attempt_clients; drop table attempts; alter table runs drop column error; pragma user_version = 5;'
"$FP" runs --store "$T/v5.db" >"$T/v5.txt" 2>"$T/v5.err"; rc1=$?
"$FP" runs --store "$T/v5.db" --format csv >"$T/v5.csv" 2>>"$T/v5.err"; rc2=$?
"$FP" runs --store "$T/v5.db" --format json >"$T/v5.json" 2>>"$T/v5.err"; rc3=$?
{
  printf '%5s  %-*s  %-10s  %-12s  %11s  %9s  %10s  %14s  %s\n' id "$w" name algorithm compressor rounds \
    final_acc final_loss uplink_bytes status
  table_rows "$T/v5.db" "''"
} >"$T/want5.txt"
check "a version 5 store: runs (table) exit 0, every run's row, no error line" \
  "[ $rc1 -eq 0 ] && cmp -s '$T/v5.txt' '$T/want5.txt'"
check "a version 5 store: runs csv and json exit 0 with the columns before schema 6 (no error column or key)" \
  "[ $rc2 -eq 0 ] && [ $rc3 -eq 0 ] && [ \"\$(head -1 '$T/v5.csv')\" = '$old_header' ] && same_csv '$T/v5.csv' '$T/v5.db' \"SELECT $run_cols FROM runs ORDER BY id\" && same_json '$T/v5.json' '$T/v5.db' \"SELECT $run_cols FROM runs ORDER BY id\" && [ ! -s '$T/v5.err' ]"
"$FP" metrics 1 --store "$T/v5.db" --format csv >"$T/v5m.csv" 2>"$T/e"; rc=$?
check "a version 5 store: metrics 1 exit 0, its 10 rounds, no hint" \
  "[ $rc -eq 0 ] && [ \$(wc -l <'$T/v5m.csv') -eq 11 ] && [ ! -s '$T/e' ]"
"$FP" metrics 1 --store "$T/v5.db" --attempts --format json >"$T/v5a.json" 2>"$T/e"; rc=$?
check "a version 5 store: metrics --attempts exit 0, an empty list, and a note that the store is older than schema 6" \
  "[ $rc -eq 0 ] && [ \"\$(cat '$T/v5a.json')\" = '[]' ] && grep -q 'older than schema 6' '$T/e'"
check "a version 5 store: the readers left it at version 5, without the new tables" \
  "[ \"\$(q '$T/v5.db' 'pragma user_version')\" = 5 ] && [ \"\$(q '$T/v5.db' \"SELECT count(*) FROM sqlite_master WHERE name LIKE 'attempt%'\")\" = 0 ]"

# ---- d. help ----
"$FP" help >"$T/help"
"$FP" metrics --help >"$T/mhelp"
"$FP" runs --help >"$T/rhelp"
check "help (fedpress help, runs --help, metrics --help): runs' error and metrics --attempts documented" \
  "(for h in help mhelp rhelp; do grep -qF -- '[--clients | --client ID | --attempts]' \"$T/\$h\" && grep -qF \"a line 'error: REASON' under its row\" \"$T/\$h\" && grep -qF 'status (answered, late, absent or refused)' \"$T/\$h\" || exit 1; done)"

finish e2e_runs_errors
