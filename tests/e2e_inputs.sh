#!/usr/bin/env bash
# End-to-end test of what makes a resumed run reproducible (issue 12, item 5):
# [data] path and [model] init are stored absolute, the SHA-256 of every input
# file is stored with the run (runs.inputs), and `sim --resume` refuses a run
# whose inputs changed or vanished, naming the file and both hashes, before it
# touches the store. Uses a small Fashion-MNIST-shaped dataset made here, so
# it needs no dataset package and can edit the files.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
T=$(mktemp -d /tmp/fp_e2e_inputs_XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/e2e_lib.sh"

T=$(cd "$T" && pwd -P) # the absolute form realpath gives
A=$T/A B=$T/B DB=$T/runs.db
mkdir -p "$A" "$B"

# Four IDX files in the layout of Fashion-MNIST: 600 training and 100 test
# images of 28x28 random pixels; seed 1 in A/data, seed 2 in B/data (the
# same relative path from B means other data).
mkdata() {
  python3 - "$1" "$2" <<'EOF'
import gzip, random, struct, sys, os
d, seed = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
r = random.Random(seed)
for name, n in (("train", 600), ("t10k", 100)):
    px = bytes(r.randrange(256) for _ in range(n * 784))
    lab = bytes(r.randrange(10) for _ in range(n))
    with open(f"{d}/{name}-images-idx3-ubyte.gz", "wb") as f:
        f.write(gzip.compress(struct.pack(">IIII", 0x803, n, 28, 28) + px, mtime=0))
    with open(f"{d}/{name}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(gzip.compress(struct.pack(">II", 0x801, n) + lab, mtime=0))
EOF
}
mkdata "$A/data" 1
mkdata "$B/data" 2
FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz
       t10k-labels-idx1-ubyte.gz)
cat >"$T/s.ini" <<'EOF'
[run]
name = inputs
rounds = 10
[data]
path = data
clients = 10
[model]
hidden = 100
init = w.f32
[algorithm]
local_steps = 100
batch = 32
EOF

# Two warm starts: A/w.f32 and, under the same relative name, a different B/w.f32.
(cd "$A" && "$FP" sim "$T/s.ini" --set model.init= --set run.rounds=1 --store "$T/w.db" \
  --quiet --model-out w.f32 >/dev/null 2>&1)
(cd "$B" && "$FP" sim "$T/s.ini" --set model.init= --set run.rounds=1 --set run.seed=9 \
  --store "$T/w.db" --quiet --model-out w.f32 >/dev/null 2>&1)
check "setup: two different init files" \
  "[ -s '$A/w.f32' ] && [ -s '$B/w.f32' ] && ! cmp -s '$A/w.f32' '$B/w.f32'"

# 1. --dry-run shows the relative paths made absolute
(cd "$A" && "$FP" sim "$T/s.ini" --dry-run) >"$T/dry" 2>&1; rc=$?
check "--dry-run: [data] path and [model] init absolute" \
  "[ $rc -eq 0 ] && grep -qx 'path = $A/data' '$T/dry' && grep -qx 'init = $A/w.f32' '$T/dry'"

# 2. run 1: the uninterrupted run, from A
(cd "$A" && "$FP" sim "$T/s.ini" --store "$DB" --quiet --model-out "$T/full.f32" >/dev/null 2>&1)
check "run 1 (never stopped) completed" \
  "[ \"\$(sqlite3 '$DB' 'select status from runs where id=1')\" = completed ]"
check "run 1's scenario holds absolute paths" \
  "sqlite3 '$DB' 'select scenario from runs where id=1' | grep -qx 'init = $A/w.f32' && sqlite3 '$DB' 'select scenario from runs where id=1' | grep -qx 'path = $A/data'"
want=$(cd / && for f in "${FILES[@]}"; do sha256sum "$A/data/$f"; done; sha256sum "$A/w.f32")
check "runs.inputs is sha256sum of the four IDX files and the init file, in read order" \
  "[ \"\$(sqlite3 '$DB' 'select inputs from runs where id=1')\" = \"\$want\" ]"
check "runs.inputs checks with sha256sum -c" \
  "sqlite3 '$DB' 'select inputs from runs where id=1' | (cd / && sha256sum --quiet -c -)"

# Starts the scenario from A and kills it with -9 after its second round; no
# state checkpoint, so --resume runs every round again and reads the data
# and the init file from the paths in the store.
killed_run() {
  (cd "$A" && exec "$FP" sim "$T/s.ini" --store "$DB" --threads 1 "$@" >/dev/null 2>"$T/kerr") &
  local pid=$!
  for _ in $(seq 1 3000); do
    grep -q 'round 2/' "$T/kerr" 2>/dev/null && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.02
  done
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
}

# 3. run 2: killed; resumed from B, where data/ and w.f32 are other files
killed_run
check "run 2 killed mid-run (status running)" \
  "[ \"\$(sqlite3 '$DB' 'select status from runs where id=2')\" = running ]"
(cd "$B" && "$FP" sim --resume 2 --store "$DB" --model-out "$T/resumed.f32" >"$T/rout" 2>&1); rc=$?
check "--resume from another directory: exit 0, completed" \
  "[ $rc -eq 0 ] && grep -q \"^run 2 'inputs' completed: 10/10\" '$T/rout'"
check "--resume from another directory: the uninterrupted run's model bytes" \
  "cmp -s '$T/full.f32' '$T/resumed.f32'"
check "--resume from another directory: the uninterrupted run's model SHA-256 in the store" \
  "[ \"\$(sqlite3 '$DB' 'select model_sha256 from runs where id=2')\" = \"\$(sqlite3 '$DB' 'select model_sha256 from runs where id=1')\" ]"

# 4. run 3: killed; its init file edited before the resume: refused
killed_run
rounds3=$(sqlite3 "$DB" 'select count(*) from rounds where run_id=3')
old=$(sha256sum <"$A/w.f32" | cut -d' ' -f1)
cp "$A/w.f32" "$T/w.keep"
cp "$B/w.f32" "$A/w.f32"
new=$(sha256sum <"$A/w.f32" | cut -d' ' -f1)
(cd "$B" && "$FP" sim --resume 3 --store "$DB" >/dev/null 2>"$T/e"); rc=$?
check "init edited: --resume refused, exit 1, names the file and both hashes" \
  "[ $rc -eq 1 ] && grep -q 'input $A/w.f32 changed since the run started' '$T/e' && grep -q \"sha256 was $old, is now $new\" '$T/e'"
check "init edited: the store is untouched (status, rounds)" \
  "[ \"\$(sqlite3 '$DB' 'select status from runs where id=3')\" = running ] && [ \$(sqlite3 '$DB' 'select count(*) from rounds where run_id=3') -eq $rounds3 ]"
cp "$T/w.keep" "$A/w.f32"

# 5. a training file edited, then one gone: refused, naming it
cp "$A/data/train-labels-idx1-ubyte.gz" "$T/l.keep"
cp "$B/data/train-labels-idx1-ubyte.gz" "$A/data/train-labels-idx1-ubyte.gz"
(cd "$A" && "$FP" sim --resume 3 --store "$DB" >/dev/null 2>"$T/e"); rc=$?
check "data file edited: --resume refused, names the file" \
  "[ $rc -eq 1 ] && grep -q 'input $A/data/train-labels-idx1-ubyte.gz changed since the run started' '$T/e'"
rm "$A/data/train-labels-idx1-ubyte.gz"
(cd "$A" && "$FP" sim --resume 3 --store "$DB" >/dev/null 2>"$T/e"); rc=$?
check "data file gone: --resume refused, names the file and its hash" \
  "[ $rc -eq 1 ] && grep -q \"read $A/data/train-labels-idx1-ubyte.gz (sha256 $(sha256sum <"$T/l.keep" | cut -d' ' -f1)), which is gone now\" '$T/e'"
cp "$T/l.keep" "$A/data/train-labels-idx1-ubyte.gz"
(cd "$B" && "$FP" sim --resume 3 --store "$DB" --model-out "$T/resumed3.f32" >/dev/null 2>&1); rc=$?
check "inputs restored: --resume runs, the uninterrupted run's model" \
  "[ $rc -eq 0 ] && cmp -s '$T/full.f32' '$T/resumed3.f32'"

# 6. a run stored before inputs were recorded (runs.inputs NULL) resumes,
#    with a warning that its inputs cannot be checked
killed_run
sqlite3 "$DB" 'update runs set inputs = NULL where id = 4'
(cd "$B" && "$FP" sim --resume 4 --store "$DB" --model-out "$T/resumed4.f32" >/dev/null 2>"$T/e"); rc=$?
check "inputs not recorded: resumes with a warning, same model" \
  "[ $rc -eq 0 ] && grep -q 'warning: run 4 was stored by an older fedpress' '$T/e' && grep -q 'cannot be checked' '$T/e' && cmp -s '$T/full.f32' '$T/resumed4.f32'"

# 7. run 5, with a state checkpoint every round: the init file is not read
#    again on --resume, but it is checked all the same
killed_run --set run.checkpoint_every=1
cp "$B/w.f32" "$A/w.f32"
(cd "$B" && "$FP" sim --resume 5 --store "$DB" >/dev/null 2>"$T/e"); rc=$?
check "state checkpoint, init edited: --resume refused all the same" \
  "[ $rc -eq 1 ] && grep -q 'input $A/w.f32 changed since the run started' '$T/e' && [ \$(sqlite3 '$DB' \"select count(*) from checkpoints where run_id=5 and kind='state'\") -eq 1 ]"
cp "$T/w.keep" "$A/w.f32"
(cd "$B" && "$FP" sim --resume 5 --store "$DB" --model-out "$T/resumed5.f32" >"$T/rout" 2>&1); rc=$?
check "state checkpoint: resumed from B after its checkpoint, the uninterrupted run's model" \
  "[ $rc -eq 0 ] && cmp -s '$T/full.f32' '$T/resumed5.f32'"

# 8. a workload that reads no file records an empty list, not NULL
printf '[data]\ndataset = quadratic\n[run]\nrounds = 2\n' >"$T/q.ini"
"$FP" sim "$T/q.ini" --store "$T/q.db" --quiet >/dev/null 2>&1
check "quadratic: runs.inputs is '' (recorded: no files)" \
  "[ \"\$(sqlite3 '$T/q.db' 'select quote(inputs) from runs where id=1')\" = \"''\" ]"

finish e2e_inputs
