#!/usr/bin/env bash
# End-to-end test of the real binary: a short real simulation, the store it
# leaves, `runs` / `metrics` in every format, error messages and exit codes
# for bad input, Ctrl-C handling, and identical bytes at 1 and 2 threads.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/e2e_lib.sh"

# 1. a short real run of the quickstart scenario
"$FP" sim "$ROOT/scenarios/quickstart.ini" --store "$T/runs.db" --set run.rounds=3 \
  --model-out "$T/q.f32" >"$T/out" 2>"$T/err"
rc=$?
check "quickstart exits 0" "[ $rc -eq 0 ]"
check "a progress line per round" "[ \$(grep -c '^\[quickstart\] round [1-3]/3' '$T/err') -eq 3 ]"
check "summary line" "grep -q \"^run 1 'quickstart' completed: 3/3 rounds, fedavg fashion-mnist\" '$T/out'"
check "model file has d = 159010 floats" "[ \$(stat -c %s '$T/q.f32') -eq 636040 ]"
sha_file=$(sha256sum "$T/q.f32" | cut -d' ' -f1)
check "printed sha256 is the model file's" "[ -n '$sha_file' ] && grep -q \"model sha256 $sha_file\" '$T/out'"
check "store sha256 is the model file's" \
  "[ -n '$sha_file' ] && [ \"\$(sqlite3 '$T/runs.db' 'select model_sha256 from runs where id=1')\" = '$sha_file' ]"
check "3 rounds rows" "[ \$(sqlite3 '$T/runs.db' 'select count(*) from rounds where run_id=1') -eq 3 ]"
check "30 client_rounds rows" \
  "[ \$(sqlite3 '$T/runs.db' 'select count(*) from client_rounds where run_id=1') -eq 30 ]"
check "uplink bytes = 3 rounds x 10 clients x 4d" \
  "[ \$(sqlite3 '$T/runs.db' 'select sum(uplink_bytes) from rounds where run_id=1') -eq $((3 * 10 * 636040)) ]"
check "status completed" "[ \"\$(sqlite3 '$T/runs.db' 'select status from runs where id=1')\" = completed ]"
check "scenario text stored with the override" \
  "sqlite3 '$T/runs.db' 'select scenario from runs where id=1' | grep -q '^rounds = 3$'"

# 2. runs / metrics
"$FP" runs --store "$T/runs.db" >"$T/runs"
check "runs lists the run" "grep -Eq '^ +1  quickstart +fedavg +identity +3/3 +0\.[0-9]{4} +[0-9.]+ +19081200  completed' '$T/runs'"
"$FP" metrics 1 --store "$T/runs.db" --format csv >"$T/m.csv"
check "metrics csv header + 3 rows" "[ \$(wc -l <'$T/m.csv') -eq 4 ] && head -1 '$T/m.csv' | grep -q '^round,train_loss,test_loss,test_accuracy,uplink_bytes'"
acc_csv=$(tail -1 "$T/m.csv" | cut -d, -f4)
acc_db=$(sqlite3 "$T/runs.db" "select printf('%.9g', test_accuracy) from rounds where run_id=1 and round=3")
check "csv accuracy equals the store's" "[ -n '$acc_db' ] && [ '$acc_csv' = '$acc_db' ]"
"$FP" metrics 1 --store "$T/runs.db" --format json >"$T/m.json"
check "metrics json parses, 3 rounds" \
  "python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert len(r)==3 and r[2][\"round\"]==3 and r[0][\"participants\"]==10' '$T/m.json'"
"$FP" metrics 1 --store "$T/runs.db" >"$T/m.txt"
check "metrics table has 3 rows" "[ \$(wc -l <'$T/m.txt') -eq 4 ]"
"$FP" metrics 1 --store "$T/runs.db" --clients --format csv >"$T/mc.csv"
check "metrics --clients: header + 30 rows, the store's client_rounds in order" \
  "[ \"\$(tail -n +2 '$T/mc.csv' | cut -d, -f1,2,4)\" = \"\$(sqlite3 -csv '$T/runs.db' 'select round, client, uplink_bytes from client_rounds where run_id=1 order by round, client')\" ] && [ \$(wc -l <'$T/mc.csv') -eq 31 ]"
c1=$(sqlite3 "$T/runs.db" "select client from client_rounds where run_id=1 limit 1")
"$FP" metrics 1 --store "$T/runs.db" --client "$c1" --format json >"$T/mc.json"
check "metrics --client: json, only that client's rounds" \
  "python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r and all(x[\"client\"]==int(sys.argv[2]) for x in r) and len(r)==int(sys.argv[3])' '$T/mc.json' $c1 \$(sqlite3 '$T/runs.db' \"select count(*) from client_rounds where run_id=1 and client=$c1\")"
"$FP" metrics 1 --store "$T/runs.db" --client -3 2>"$T/e"; rc=$?
check "metrics --client -3: usage error" "[ $rc -eq 2 ] && grep -q 'expected a client id' '$T/e'"
"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set run.rounds=3 \
  --set 'run.name=odd, "name" \ here' --store "$T/odd.db" --quiet >/dev/null 2>&1
"$FP" runs --store "$T/odd.db" --format csv >"$T/odd.csv"
"$FP" runs --store "$T/odd.db" --format json >"$T/odd.json"
check "runs --format csv and json: a name with a comma, quotes and a backslash survives" \
  "python3 -c 'import csv,json,sys; want=\"odd, \\\"name\\\" \\\\ here\"; r=list(csv.DictReader(open(sys.argv[1]))); j=json.load(open(sys.argv[2])); assert r[0][\"name\"]==want and j[0][\"name\"]==want and r[0][\"final_accuracy\"]==\"\" and j[0][\"final_accuracy\"] is None and float(r[0][\"final_loss\"])==j[0][\"final_loss\"]' '$T/odd.csv' '$T/odd.json'"
"$FP" metrics 99 --store "$T/runs.db" 2>"$T/e" ; rc=$?
check "metrics on a missing run: exit 1 and says so" "[ $rc -eq 1 ] && grep -q 'no run 99' '$T/e'"

# 3. bad input: clear errors, exit 2 (usage) or 1 (runtime)
printf '[data]\nclients = 10\nbogus = 3\n' >"$T/bad.ini"
"$FP" sim "$T/bad.ini" --store "$T/runs.db" 2>"$T/e"; rc=$?
check "unknown key: exit 2, names file:line and key" "[ $rc -eq 2 ] && grep -q \"bad.ini:3: unknown key 'bogus' in \[data\]\" '$T/e'"
"$FP" sim "$ROOT/scenarios/quickstart.ini" --store "$T/runs.db" --set data.path=/nonexistent 2>"$T/e"; rc=$?
check "missing dataset: names the file and the apt package" \
  "[ $rc -eq 1 ] && grep -q '/nonexistent/train-images-idx3-ubyte.gz' '$T/e' && grep -q 'apt-get install dataset-fashion-mnist' '$T/e'"
"$FP" sim "$ROOT/scenarios/quickstart.ini" --threads 0 2>"$T/e"; rc=$?
check "--threads 0 rejected" "[ $rc -eq 2 ] && grep -q 'expected an integer in \[1, 256\]' '$T/e'"
"$FP" bogus 2>/dev/null; rc=$?
check "unknown command: exit 2" "[ $rc -eq 2 ]"
"$FP" sim --help >"$T/h"; rc=$?
check "sim --help exits 0 and documents --set" "[ $rc -eq 0 ] && grep -q -- '--set section.key=value' '$T/h'"
echo "not a database, just text that is long enough to fill a page header......" >"$T/notdb.db"
"$FP" runs --store "$T/notdb.db" 2>"$T/e"; rc=$?
check "a non-SQLite store: exit 1 naming the file" "[ $rc -eq 1 ] && grep -q 'notdb.db' '$T/e'"

"$FP" runs --store "$T/typo.db" 2>"$T/e"; rc=$?
check "runs on a missing store: exit 1, no file created" "[ $rc -eq 1 ] && [ ! -e '$T/typo.db' ] && grep -q 'no such run store' '$T/e'"

"$FP" sim "$ROOT/scenarios/quickstart.ini" --dry-run --store "$T/dry.db" --set run.rounds=7 \
  --set algorithm.lr_local=0.1 >"$T/dry" 2>&1; rc=$?
check "--dry-run: exit 0, effective values, no store" \
  "[ $rc -eq 0 ] && grep -qx 'rounds = 7' '$T/dry' && grep -qx 'lr_local = 0.1' '$T/dry' && [ ! -e '$T/dry.db' ]"

# 4. Ctrl-C: the run is marked interrupted, committed rounds stay, exit 130
"$FP" sim "$ROOT/scenarios/quickstart.ini" --store "$T/int.db" --set run.rounds=100000 \
  >"$T/out" 2>"$T/err" &
pid=$!
for _ in $(seq 1 600); do grep -q 'round 2/' "$T/err" 2>/dev/null && break; sleep 0.1; done
"$FP" sim --resume 1 --store "$T/int.db" >/dev/null 2>"$T/e"; rc=$?
check "--resume of a run another process is running: refused" \
  "[ $rc -eq 1 ] && grep -q 'being run by another process (pid $pid)' '$T/e' && [ \$(sqlite3 '$T/int.db' 'select status from runs') = running ]"
kill -INT $pid
wait $pid; rc=$?
check "SIGINT: exit 130" "[ $rc -eq 130 ]"
check "SIGINT: status interrupted" "[ \"\$(sqlite3 '$T/int.db' 'select status from runs')\" = interrupted ]"
check "SIGINT: rounds_done matches committed rounds" \
  "[ \"\$(sqlite3 '$T/int.db' 'select rounds_done from runs')\" = \"\$(sqlite3 '$T/int.db' 'select count(*) from rounds')\" ] && [ \$(sqlite3 '$T/int.db' 'select count(*) from rounds') -ge 2 ]"
check "SIGINT: store passes integrity_check" "[ -s '$T/int.db' ] && [ \"\$(sqlite3 '$T/int.db' 'pragma integrity_check')\" = ok ]"
check "SIGINT: the run's lock file is gone" "[ -s '$T/int.db' ] && [ ! -e '$T/int.db.run1.lock' ]"

# 4b. kill -9 mid-run, then --resume: the same model as a run never stopped
R=(--store "$T/res.db" --set run.rounds=8 --set run.checkpoint_every=3 --set data.clients=40
   --set participation.sample=6)
"$FP" sim "$ROOT/scenarios/paper/scafcom-top1.ini" "${R[@]}" --quiet --model-out "$T/full.f32" >/dev/null 2>&1
"$FP" sim "$ROOT/scenarios/paper/scafcom-top1.ini" "${R[@]}" --threads 1 >/dev/null 2>"$T/kerr" &
pid=$!
for _ in $(seq 1 600); do grep -q 'round 5/' "$T/kerr" 2>/dev/null && break; sleep 0.02; done
kill -9 $pid
wait $pid 2>/dev/null
check "kill -9: the run is left 'running' with a state checkpoint" \
  "[ \"\$(sqlite3 '$T/res.db' \"select status from runs where id=2\")\" = running ] && [ \"\$(sqlite3 '$T/res.db' \"select count(*) from checkpoints where run_id=2 and kind='state'\")\" = 1 ]"
"$FP" sim --resume 2 --store "$T/res.db" --model-out "$T/resumed.f32" >"$T/rout" 2>&1; rc=$?
check "--resume: exit 0, completed" "[ $rc -eq 0 ] && grep -q \"^run 2 'scafcom-top1' completed: 8/8\" '$T/rout'"
check "--resume: the same model bytes as the run never stopped" "cmp -s '$T/full.f32' '$T/resumed.f32'"
check "--resume: the same metrics and bytes" \
  "[ \$(sqlite3 '$T/res.db' 'select count(*) from rounds where run_id=1') -eq 8 ] && [ \"\$(sqlite3 '$T/res.db' 'select round, train_loss, test_accuracy, uplink_bytes from rounds where run_id=1')\" = \"\$(sqlite3 '$T/res.db' 'select round, train_loss, test_accuracy, uplink_bytes from rounds where run_id=2')\" ] && [ \"\$(sqlite3 '$T/res.db' 'select uplink_bytes from runs where id=1')\" = \"\$(sqlite3 '$T/res.db' 'select uplink_bytes from runs where id=2')\" ]"
# without a state checkpoint, --resume runs the rounds again from the start: same bytes
"$FP" sim "$ROOT/scenarios/paper/scafcom-top1.ini" "${R[@]}" --set run.checkpoint_every=0 \
  --threads 1 >/dev/null 2>"$T/kerr2" &
pid=$!
for _ in $(seq 1 600); do grep -q 'round 3/' "$T/kerr2" 2>/dev/null && break; sleep 0.02; done
kill -9 $pid
wait $pid 2>/dev/null
"$FP" sim --resume 3 --store "$T/res.db" --model-out "$T/resumed0.f32" >/dev/null 2>&1; rc=$?
check "--resume with no checkpoint: reruns, same model bytes" \
  "[ $rc -eq 0 ] && cmp -s '$T/full.f32' '$T/resumed0.f32'"
"$FP" sim --resume 1 --store "$T/res.db" >/dev/null 2>"$T/e"; rc=$?
check "--resume of a completed run: exit 1, says so" "[ $rc -eq 1 ] && grep -q 'already completed' '$T/e'"
"$FP" sim --resume 9 --store "$T/res.db" >/dev/null 2>"$T/e"; rc=$?
check "--resume of a missing run: exit 1" "[ $rc -eq 1 ] && grep -q 'no run 9' '$T/e'"
"$FP" sim --resume 2 "$ROOT/scenarios/quickstart.ini" 2>"$T/e"; rc=$?
check "--resume with a file: usage error" "[ $rc -eq 2 ]"

# 5. same bytes at 1 and 2 threads, from the real binary
for t in 1 2; do
  "$FP" sim "$ROOT/scenarios/scaffold-fmnist.ini" --quiet --threads $t --store "$T/det.db" \
    --set run.rounds=2 --set data.clients=40 --set participation.sample=6 --model-out "$T/t$t.f32" >/dev/null 2>&1
done
check "threads 1 and 2: identical model bytes" "cmp -s '$T/t1.f32' '$T/t2.f32'"
check "threads 1 and 2: identical metrics" \
  "[ \$(sqlite3 '$T/det.db' 'select count(*) from rounds where run_id=1') -eq 2 ] && [ \"\$(sqlite3 '$T/det.db' 'select train_loss, test_loss, test_accuracy, uplink_bytes from rounds where run_id=1')\" = \"\$(sqlite3 '$T/det.db' 'select train_loss, test_loss, test_accuracy, uplink_bytes from rounds where run_id=2')\" ]"

# 5b. QSGD gives the same bytes with the portable code as with each vector
#     implementation this CPU runs (FEDPRESS_SIMD caps it; a cap above what
#     the CPU has would run portable code again, so only those it has are
#     compared), and uploads 32 + 4d bits each
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null) "
vec=()  # as algorithms/qsgd.c picks: avx512 needs avx512f + avx2 + bmi2
case $flags in *" avx2 "*) vec+=(avx2) ;; esac
if [[ $flags == *" avx512f "* && $flags == *" avx2 "* && $flags == *" bmi2 "* ]]; then vec+=(avx512); fi
for simd in portable "${vec[@]}"; do
  FEDPRESS_SIMD=$simd "$FP" sim "$ROOT/scenarios/paper/scallion-qsgd4.ini" --quiet \
    --store "$T/simd.db" --set run.rounds=2 --set data.clients=40 --set participation.sample=5 \
    --model-out "$T/q-$simd.f32" >/dev/null 2>&1
done
for simd in "${vec[@]}"; do
  check "qsgd: portable and $simd code, identical model bytes" \
    "[ -s '$T/q-$simd.f32' ] && cmp -s '$T/q-portable.f32' '$T/q-$simd.f32'"
done
[ ${#vec[@]} -eq 0 ] && skip "qsgd: portable against vector code: this CPU has no AVX2, nothing to compare"
check "qsgd:4: 79509 bytes per client upload" \
  "[ \"\$(sqlite3 '$T/simd.db' 'select group_concat(distinct uplink_bytes) from client_rounds')\" = 79509 ]"

# 6. compressed uplink: the store counts exactly the encoded sizes
#    top-1% of d = 159010: k = 1590, 32-bit indices + float32 values = 8k = 12720 bytes;
#    rand-1%: only the k values travel (the mask comes from the shared stream) = 4k = 6360 bytes.
"$FP" sim "$ROOT/scenarios/paper/scafcom-top1.ini" --quiet --store "$T/c.db" --set run.rounds=2 \
  --set data.clients=40 --set participation.sample=5 >/dev/null 2>&1
"$FP" sim "$ROOT/scenarios/paper/scallion-rand1.ini" --quiet --store "$T/c.db" --set run.rounds=2 \
  --set data.clients=40 --set participation.sample=5 >/dev/null 2>&1
check "top-1%: 12720 bytes per client upload" \
  "[ \"\$(sqlite3 '$T/c.db' 'select group_concat(distinct uplink_bytes) from client_rounds where run_id=1')\" = 12720 ]"
check "top-1%: round uplink = 5 x 12720" \
  "[ \"\$(sqlite3 '$T/c.db' 'select group_concat(distinct uplink_bytes) from rounds where run_id=1')\" = 63600 ]"
check "rand-1%: 6360 bytes per client upload" \
  "[ \"\$(sqlite3 '$T/c.db' 'select group_concat(distinct uplink_bytes) from client_rounds where run_id=2')\" = 6360 ]"
check "runs records the compressor" \
  "[ \"\$(sqlite3 '$T/c.db' 'select group_concat(algorithm || \":\" || compressor) from runs')\" = 'scafcom:topk,scallion:randk' ]"
check "downlink: x and c, 2 x 4d per participant" \
  "[ \"\$(sqlite3 '$T/c.db' 'select group_concat(distinct downlink_bytes) from client_rounds')\" = 1272080 ]"

# 7. sweep: the grid, names, skipping what is done, checking before running
Q="$ROOT/scenarios/fedavg-quadratic.ini"
"$FP" sweep "$Q" --vary algorithm.lr_local=0.05,0.1 --vary run.seed=1,2 --set run.rounds=20 \
  --store "$T/sw.db" --quiet >"$T/sw1" 2>"$T/e"; rc=$?
check "sweep: 4 runs completed, named by their values, in order" \
  "[ $rc -eq 0 ] && [ \"\$(sqlite3 '$T/sw.db' \"select group_concat(name || ':' || status, ' ') from runs\")\" = 'fedavg-quadratic-lr_local=0.05-seed=1:completed fedavg-quadratic-lr_local=0.05-seed=2:completed fedavg-quadratic-lr_local=0.1-seed=1:completed fedavg-quadratic-lr_local=0.1-seed=2:completed' ]"
"$FP" sim "$Q" --set run.rounds=20 --set algorithm.lr_local=0.1 --set run.seed=2 \
  --set 'run.name=fedavg-quadratic-lr_local=0.1-seed=2' --store "$T/sw-one.db" --quiet >"$T/sw-one" 2>&1
check "sweep: a run has the model of the same fedpress sim" \
  "[ -n \"\$(sqlite3 '$T/sw-one.db' 'select model_sha256 from runs where id=1')\" ] && [ \"\$(sqlite3 '$T/sw.db' 'select model_sha256 from runs where id=4')\" = \"\$(sqlite3 '$T/sw-one.db' 'select model_sha256 from runs where id=1')\" ]"
"$FP" sweep "$Q" --vary algorithm.lr_local=0.05,0.1 --vary run.seed=1,2,3 --set run.rounds=20 \
  --store "$T/sw.db" --quiet >"$T/sw2" 2>"$T/e"; rc=$?
check "sweep again with one more seed: only the 2 new runs, 4 'done before' in the table" \
  "[ $rc -eq 0 ] && [ \$(sqlite3 '$T/sw.db' 'select count(*) from runs') -eq 6 ] && [ \$(grep -c 'done before' '$T/sw2') -eq 4 ]"
"$FP" sweep "$Q" --vary algorithm.lr_local=0.1,0 --store "$T/sw.db" >/dev/null 2>"$T/e"; rc=$?
check "sweep: a bad value is a usage error before anything runs" \
  "[ $rc -eq 2 ] && grep -q 'lr_local=0:' '$T/e' && [ \$(sqlite3 '$T/sw.db' 'select count(*) from runs') -eq 6 ]"
"$FP" sweep "$Q" --vary algorithm.lr_local=0.05,0.1 --vary run.seed=1,2,3 --set run.rounds=20 \
  --store "$T/sw.db" --dry-run >"$T/sw3" 2>&1; rc=$?
check "sweep --dry-run: 6 lines, all done" "[ $rc -eq 0 ] && [ \$(grep -c '(done: run' '$T/sw3') -eq 6 ]"

# 8. a sweep killed with -9 in its second run: the next sweep resumes that
#    run from its checkpoint, and it ends with the bytes of a plain sim
P="$ROOT/scenarios/paper/fedavg.ini"
SW=(--vary run.seed=1,2 --set run.rounds=30 --set run.checkpoint_every=2 --set data.clients=40
    --set participation.sample=5 --store "$T/swk.db" --threads 1 --quiet)
"$FP" sweep "$P" "${SW[@]}" >/dev/null 2>&1 &
pid=$!
# (wait for run 2's third round, however slow a loaded machine is; stop
# waiting if the sweep has ended)
for _ in $(seq 6000); do
  [ "$(sqlite3 "$T/swk.db" 'select count(*) from rounds where run_id=2' 2>/dev/null || echo 0)" -ge 3 ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.05
done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
"$FP" sweep "$P" "${SW[@]}" >"$T/swk" 2>&1; rc=$?
"$FP" sim "$P" --set run.seed=2 --set run.rounds=30 --set run.checkpoint_every=2 \
  --set data.clients=40 --set participation.sample=5 --set run.name=fedavg-seed=2 \
  --store "$T/swk-one.db" --quiet >/dev/null 2>&1
check "sweep after kill -9: run 2 resumed, same model as a plain sim" \
  "[ $rc -eq 0 ] && grep -Eq '^ +2  resumed ' '$T/swk' && [ \$(sqlite3 '$T/swk.db' 'select count(*) from runs') -eq 2 ] && [ -n \"\$(sqlite3 '$T/swk-one.db' 'select model_sha256 from runs where id=1')\" ] && [ \"\$(sqlite3 '$T/swk.db' 'select model_sha256 from runs where id=2')\" = \"\$(sqlite3 '$T/swk-one.db' 'select model_sha256 from runs where id=1')\" ]"

finish e2e
