#!/usr/bin/env bash
# End-to-end test of the run store's hardening (issue 12, items 1-4, 9, 10):
# no output path lands on the store, a store moved or deleted under a run
# stops it, one process per run whatever path names the store, a busy store
# is waited for, --model-out is checked before the first round and its
# failure loses no model, and opening inspects before it modifies (readers
# read only).
set -uo pipefail
FP=$(readlink -f "${FEDPRESS:?FEDPRESS must point at the fedpress binary}")
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_store_XXXXXX)
. "$(dirname "$0")/e2e_lib.sh"
trap 'umount_all; end_jobs KILL' EXIT
Q="$ROOT/scenarios/fedavg-quadratic.ini"
q() { sqlite3 "$@" 2>/dev/null; }
# a run of many short rounds, to act on while it writes (quadratic: ~0.1 ms a round)
LONG=(--set run.rounds=1000000 --set run.eval_every=100000)
# waits (up to 60 s) until file $1 has a progress line of round $2 or later
wait_round() {
  for _ in $(seq 1 600); do
    [ "$(grep -o 'round [0-9]*/' "$1" 2>/dev/null | tail -1 | tr -dc 0-9)" -ge "$2" ] 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# 1. No output path may be the store or one of its files: exit 2, nothing written
S="$T/one.db"
"$FP" sim "$Q" --store "$S" --quiet >/dev/null 2>&1
sha1=$(q "$S" 'select model_sha256 from runs where id = 1')
check "setup: run 1 completed" "[ \"\$(q '$S' 'select status from runs')\" = completed ] && [ -n '$sha1' ]"
ln -s "$S" "$T/link.f32"
ln "$S" "$T/hard.f32"
for out in "$S" "$S-wal" "$T/link.f32" "$T/hard.f32" "$T/./one.db-journal"; do
  "$FP" sim "$Q" --store "$S" --model-out "$out" --quiet >/dev/null 2>"$T/e"; rc=$?
  check "--model-out $(basename "$out"): exit 2, says it is the store, before anything" \
    "[ $rc -eq 2 ] && grep -q 'run store' '$T/e'"
done
rm -f "$T/hard.f32"
check "--model-out on the store: the store passes integrity_check, run 1 intact, no other run" \
  "[ \"\$(q '$S' 'pragma integrity_check')\" = ok ] && [ \"\$(q '$S' 'select count(*) || status || model_sha256 from runs')\" = '1completed$sha1' ] && [ \"\$(q '$S' 'select count(*) from rounds')\" = 200 ]"
ln -s "$S" "$T/plot.svg"
"$FP" plot 1 --store "$S" --metric test_loss -o "$T/plot.svg" >/dev/null 2>"$T/e"; rc=$?
check "plot -o a symlink to the store: exit 2, the store intact" \
  "[ $rc -eq 2 ] && [ -L '$T/plot.svg' ] && [ \"\$(q '$S' 'pragma integrity_check')\" = ok ] && [ \"\$(q '$S' 'select count(*) from runs')\" = 1 ]"

# 2. A store deleted or moved while a run writes stops the run loudly
for how in delete rename; do
  D="$T/$how.db"
  "$FP" sim "$Q" --store "$D" "${LONG[@]}" >"$T/out-$how" 2>"$T/err-$how" &
  pid=$!
  wait_round "$T/err-$how" 200
  if [ $how = delete ]; then rm -f "$D"; else mv "$D" "$T/$how-moved.db"; fi
  for _ in $(seq 1 300); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  kill -0 $pid 2>/dev/null && { kill -9 $pid; bad "$how: the run went on writing"; }
  wait $pid; rc=$?
  if [ $how = delete ]; then
    check "store deleted mid-run: exit 1, names the store and says it was deleted, no 'completed'" \
      "[ $rc -eq 1 ] && grep -q '$D was deleted' '$T/err-$how' && ! grep -q completed '$T/out-$how'"
  else
    M="$T/$how-moved.db"
    check "store renamed mid-run: exit 1, names the store and says it moved" \
      "[ $rc -eq 1 ] && grep -q '$D was moved or renamed' '$T/err-$how' && ! grep -q completed '$T/out-$how'"
    check "store renamed mid-run: the moved file holds the committed rounds by itself" \
      "rm -f '$D-wal' '$D-shm'; [ \"\$(q '$M' 'pragma integrity_check')\" = ok ] && [ \"\$(q '$M' 'select rounds_done >= 200 and rounds_done = (select count(*) from rounds) and status = \"running\" from runs')\" = 1 ]"
  fi
done

# 3. One process per run, whatever path names the store; a completed run stays completed
L="$T/lock.db"
SW=(--vary run.seed=1 --set run.rounds=1000000 --set run.eval_every=100000
    --set run.checkpoint_every=1000)
"$FP" sweep "$Q" "${SW[@]}" --store "$L" >/dev/null 2>"$T/lerr" &
pid=$!
wait_round "$T/lerr" 100
ln -s "$L" "$T/lock-link.db"
for other in "$T/lock-link.db" "$T/./lock.db" "$T//lock.db"; do
  timeout 5 "$FP" sim --resume 1 --store "$other" --quiet >/dev/null 2>"$T/e"; rc=$?
  check "--resume through '$other' while another process runs it: refused, names its pid" \
    "[ $rc -eq 1 ] && grep -q 'being run by another process (pid $pid)' '$T/e'"
done
(cd "$T" && timeout 5 "$FP" sim --resume 1 --store lock.db --quiet >/dev/null 2>"$T/e"); rc=$?
check "--resume through a relative path: refused" "[ $rc -eq 1 ] && grep -q 'being run by another process' '$T/e'"
timeout 5 "$FP" sweep "$Q" "${SW[@]}" --store "$T/lock-link.db" --quiet >"$T/sw" 2>&1; rc=$?
check "the same sweep through a symlink: leaves the run to the process running it" \
  "[ $rc -eq 0 ] && grep -q 'left to the process running it' '$T/sw'"
kill -INT $pid; wait $pid; rc=$?
check "the process that held it: exit 130, run interrupted, no lock file anywhere" \
  "[ $rc -eq 130 ] && [ \"\$(q '$L' 'select status from runs where id = 1')\" = interrupted ] && ! ls '$T' | grep -q 'lock\$'"
C="$T/done.db"
"$FP" sim "$Q" --store "$C" --quiet >/dev/null 2>&1
csha=$(q "$C" 'select model_sha256 from runs')
"$FP" sim --resume 1 --store "$C" --quiet >/dev/null 2>"$T/e"; rc=$?
check "--resume of a completed run: refused, still completed with its model hash" \
  "[ $rc -eq 1 ] && [ \"\$(q '$C' 'select status || model_sha256 from runs')\" = 'completed$csha' ]"

# 4. A store busy for longer than SQLite's 5 s: the run waits and completes
B="$T/busy.db"
"$FP" sim "$Q" --store "$B" --set run.rounds=2 --quiet >/dev/null 2>&1
python3 - "$B" "$T/held" <<'EOF' &
import sqlite3, sys, time, pathlib
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
c.execute("BEGIN IMMEDIATE")
c.execute("INSERT INTO runs(name, algorithm, scenario, seed, rounds_planned, started_at) VALUES('holder', 'x', '', 0, 1, '2024-01-01T00:00:00.000Z')")
pathlib.Path(sys.argv[2]).touch()
time.sleep(7)
c.execute("COMMIT")
EOF
hpid=$!
for _ in $(seq 1 100); do [ -e "$T/held" ] && break; sleep 0.1; done
"$FP" sim "$Q" --store "$B" --set run.rounds=3 >"$T/out" 2>"$T/err"; rc=$?
wait $hpid
check "store write-locked for 7 s by another process: the run waits, warns, and completes" \
  "[ $rc -eq 0 ] && grep -q 'is busy' '$T/err' && [ \"\$(q '$B' \"select status from runs where name = 'fedavg-quadratic' and rounds_planned = 3\")\" = completed ] && [ \"\$(q '$B' 'select count(*) from runs')\" = 3 ]"

# 9. --model-out checked before the first round; a failed write loses no model
Mo="$T/mo.db"
start=$(date +%s)
"$FP" sim "$Q" --store "$Mo" --set run.rounds=3000 --model-out /nonexistent-dir/m.f32 --quiet \
  >/dev/null 2>"$T/e"; rc=$?
check "--model-out /nonexistent-dir/m.f32: exit 1 at once, names the directory, no run started" \
  "[ $rc -eq 1 ] && grep -q '/nonexistent-dir' '$T/e' && [ \$(( \$(date +%s) - $start )) -lt 10 ] && [ \"\$(q '$Mo' 'select count(*) from runs')\" = 0 ] && [ \"\$(q '$Mo' 'select count(*) from rounds')\" = 0 ]"
"$FP" sim "$Q" --store "$Mo" --set run.rounds=3000 --model-out /proc/fedpress-m.f32 --quiet \
  >/dev/null 2>"$T/e"; rc=$?
check "--model-out into a directory that takes no files (/proc): exit 1, no run started" \
  "[ $rc -eq 1 ] && [ \"\$(q '$Mo' 'select count(*) from runs')\" = 0 ]"
"$FP" sim "$Q" --store "$Mo" --model-out "$T" --quiet >/dev/null 2>"$T/e"; rc=$?
check "--model-out a directory: exit 1, no run started" \
  "[ $rc -eq 1 ] && grep -q 'is a directory' '$T/e' && [ \"\$(q '$Mo' 'select count(*) from runs')\" = 0 ]"
echo keep >"$T/target"
ln -s "$T/target" "$T/mlink"
mkfifo "$T/fifo"
for out in "$T/mlink" "$T/fifo"; do
  "$FP" sim "$Q" --store "$Mo" --model-out "$out" --quiet >/dev/null 2>"$T/e"; rc=$?
  check "--model-out $(basename "$out") (a symlink, a pipe): exit 1 before any run, left as it was" \
    "[ $rc -eq 1 ] && grep -q 'not a regular file' '$T/e' && [ \"\$(q '$Mo' 'select count(*) from runs')\" = 0 ] && { [ -L '$out' ] || [ -p '$out' ]; } && [ \"\$(cat '$T/target')\" = keep ]"
done
mkdir -p "$T/rodir"
if ro_mount "$T/rodir"; then
  "$FP" sim "$Q" --store "$Mo" --model-out "$T/rodir/m.f32" --quiet >/dev/null 2>"$T/e"; rc=$?
  check "--model-out on a read-only mount: exit 1, says why, no run started" \
    "[ $rc -eq 1 ] && grep -q 'Read-only file system' '$T/e' && [ \"\$(q '$Mo' 'select count(*) from runs')\" = 0 ]"
else
  skip "--model-out on a read-only mount: cannot make a read-only bind mount here (needs root and mount)"
fi
mkdir -p "$T/gone"
Me="$T/mo-end.db"
"$FP" sim "$Q" --store "$Me" "${LONG[@]}" --set run.rounds=20000 --model-out "$T/gone/m.f32" \
  >"$T/out" 2>"$T/err-gone" &
pid=$!
wait_round "$T/err-gone" 100
rm -rf "$T/gone"
wait $pid; rc=$?
msha=$(q "$Me" 'select model_sha256 from runs where id = 1')
q "$Me" "select writefile('$T/got.f32', data) from checkpoints where run_id = 1 and kind = 'model'" >/dev/null
check "--model-out unwritable at the end: exit 1, the run completed with its model stored, the error says how to get it" \
  "[ $rc -eq 1 ] && [ \"\$(q '$Me' 'select status from runs where id = 1')\" = completed ] && [ -n '$msha' ] && [ \"\$(sha256sum '$T/got.f32' | cut -d' ' -f1)\" = '$msha' ] && grep -q \"writefile\" '$T/err-gone' && grep -q 'run_id = 1' '$T/err-gone'"

# 10. Inspect before modifying; readers read only
S10="$T/ten.db"
"$FP" sim "$Q" --store "$S10" --quiet >/dev/null 2>&1
F="$T/foreign.db"
sqlite3 "$F" 'create table notes(x); insert into notes values (1);'
fsha=$(sha256sum "$F" | cut -d' ' -f1)
"$FP" sim "$Q" --store "$F" --quiet >/dev/null 2>"$T/e"; rc1=$?
"$FP" runs --store "$F" >/dev/null 2>&1; rc2=$?
check "a foreign SQLite file: refused by sim and runs, bytes unchanged, still journal_mode delete, no -wal" \
  "[ $rc1 -eq 1 ] && [ $rc2 -eq 1 ] && grep -q 'not a run store' '$T/e' && [ \"\$(sha256sum '$F' | cut -d' ' -f1)\" = '$fsha' ] && [ \"\$(q '$F' 'pragma journal_mode')\" = delete ] && [ ! -e '$F-wal' ]"
R="$T/rb.db"
cp "$S10" "$R"
sqlite3 "$R" 'pragma journal_mode=delete' >/dev/null
"$FP" runs --store "$R" >/dev/null 2>&1; rc1=$?
"$FP" metrics 1 --store "$R" >/dev/null 2>&1; rc2=$?
check "runs and metrics on a store in rollback mode: read it, leave it in rollback mode" \
  "[ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && [ \"\$(q '$R' 'pragma journal_mode')\" = delete ]"
V="$T/v1.db"
cp "$S10" "$V"
sqlite3 "$V" 'drop table checkpoint_parts; pragma user_version = 1;'
"$FP" runs --store "$V" >"$T/out" 2>&1; rc=$?
check "runs on an older (version 1) store: lists it without upgrading it" \
  "[ $rc -eq 0 ] && grep -q 'fedavg-quadratic' '$T/out' && [ \"\$(q '$V' 'pragma user_version')\" = 1 ]"
mkdir -p "$T/romedia"
cp "$S10" "$T/romedia/r.db"
if ro_mount "$T/romedia"; then
  "$FP" runs --store "$T/romedia/r.db" >"$T/out" 2>"$T/e"; rc1=$?
  "$FP" metrics 1 --store "$T/romedia/r.db" --format csv >"$T/m.csv" 2>>"$T/e"; rc2=$?
  "$FP" plot 1 --store "$T/romedia/r.db" --metric test_loss -o "$T/ro.svg" >/dev/null 2>>"$T/e"; rc3=$?
  check "a store on read-only media: runs, metrics and plot read it" \
    "[ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && [ $rc3 -eq 0 ] && grep -q 'fedavg-quadratic' '$T/out' && [ \$(wc -l <'$T/m.csv') -eq 201 ] && [ -s '$T/ro.svg' ]"
else
  skip "a store on read-only media: cannot make a read-only bind mount here (needs root and mount)"
fi
rm -f /dev/null-journal 2>/dev/null
if [ -e /dev/null-journal ]; then
  skip "--store /dev/null: /dev/null-journal exists already and cannot be removed"
else
  "$FP" sim "$Q" --store /dev/null --quiet >/dev/null 2>"$T/e"; rc1=$?
  "$FP" runs --store /dev/null >/dev/null 2>>"$T/e"; rc2=$?
  created=0
  [ -e /dev/null-journal ] && created=1
  rm -f /dev/null-journal 2>/dev/null  # (an older fedpress makes it)
  check "--store /dev/null: refused (not a regular file), no /dev/null-journal" \
    "[ $rc1 -eq 1 ] && [ $rc2 -eq 1 ] && grep -q 'not a regular file' '$T/e' && [ $created -eq 0 ]"
fi
mkdir -p "$T/adir"
"$FP" sim "$Q" --store "$T/adir" --quiet >/dev/null 2>"$T/e"; rc=$?
check "--store a directory: refused, nothing created beside it" \
  "[ $rc -eq 1 ] && grep -q 'is a directory\|(it is a directory)' '$T/e' && [ ! -e '$T/adir-journal' ] && [ ! -e '$T/adir-wal' ]"

finish e2e_store
