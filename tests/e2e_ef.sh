#!/usr/bin/env bash
# End-to-end test of the error-feedback family (EF21, EF21-W, EControl,
# EF14) on the lsq workload, with the real binary: the same bytes at 1 and 2
# threads (partial participation and stochastic gradients included), the
# exact uplink bytes (a dense first upload for the EF21 family, then top-k's
# encoding), kill -9 then --resume ending with the model of a run never
# stopped, and a coordinator with 4 client daemons ending with the
# simulator's model and metrics.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
T=$(mktemp -d /tmp/fp_e2e_ef_XXXXXX)
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
trap end_jobs EXIT

cat >"$T/ef.ini" <<'INI'
[run]
name = ef
seed = 3
rounds = 12
eval_every = 4
[data]
dataset = lsq
clients = 6
dim = 20
rows = 30
smooth_ratio = 100
[algorithm]
name = ef21
batch = 1000
step = theory
[compressor]
name = topk
k = 3
INI
store_sum() { sqlite3 "$1" "select sum(uplink_bytes) from rounds where run_id=1"; }

# 1. every method runs; uplink bytes are exact: top-3 of d = 20 is
#    min(64*3, 32*3 + 20) = 116 bits = 15 bytes; the EF21 family's first
#    upload is the dense gradient, 4d = 80 bytes
for a in ef21 ef21-w econtrol ef14; do
  "$FP" sim "$T/ef.ini" --set algorithm.name=$a --store "$T/$a.db" --quiet >"$T/$a.out" 2>"$T/$a.err"
  check "$a: completes" "[ $? -eq 0 ] && grep -q \"completed: 12/12 rounds, $a lsq\" '$T/$a.out'"
  if [ $a = ef14 ]; then want=$((12 * 6 * 15)); else want=$((6 * 80 + 11 * 6 * 15)); fi
  check "$a: uplink bytes = $want" "[ \"\$(store_sum '$T/$a.db')\" = $want ]"
done
check "the four methods end at four different models" \
  "[ \$(for a in ef21 ef21-w econtrol ef14; do fp_sha '$T/'\$a.out; done | sort -u | grep -c .) -eq 4 ]"

# 2. partial participation (EF21-PP) with stochastic gradients: the same
#    bytes at 1 and 2 threads
P=(--set algorithm.name=ef21-w --set participation.sample=4 --set algorithm.batch=7)
"$FP" sim "$T/ef.ini" "${P[@]}" --store "$T/t1.db" --threads 1 --quiet >"$T/t1.out" 2>&1
"$FP" sim "$T/ef.ini" "${P[@]}" --store "$T/t2.db" --threads 2 --quiet >"$T/t2.out" 2>&1
check "ef21-w, sample 4 of 6, batch 7: the same model at 1 and 2 threads" \
  "[ -n \"\$(fp_sha '$T/t1.out')\" ] && [ \"\$(fp_sha '$T/t1.out')\" = \"\$(fp_sha '$T/t2.out')\" ]"
check "... and the same metrics" \
  "[ \"\$(\"$FP\" metrics 1 --store '$T/t1.db' --format csv | cut -d, -f1-7)\" = \"\$(\"$FP\" metrics 1 --store '$T/t2.db' --format csv | cut -d, -f1-7)\" ]"
"$FP" sim "$T/ef.ini" --set algorithm.name=econtrol --set participation.sample=4 \
  --store "$T/pp.db" >/dev/null 2>"$T/pp.err"
check "econtrol with sample < clients is refused, saying why" \
  "[ $? -ne 0 ] && grep -q 'defined for full participation only' '$T/pp.err'"

# 3. kill -9 mid-run, then --resume: the same model bytes as a run never
#    stopped (the state holds x, g, and every client's h_i and e_i)
R=(--set run.rounds=3000 --set run.eval_every=500 --set run.checkpoint_every=7
   --set data.clients=20 --set data.dim=100 --set data.rows=400 --set algorithm.name=econtrol
   --set algorithm.eta=0.01 --set compressor.k=5)
resume_after_kill ef "$T/ef.ini" "${R[@]}"

# 4. the daemons: a coordinator and 4 clients over loopback, EF21-W with
#    partial participation, end with the simulator's model and metrics
N=4
make_keys $N
daemon_run ef21-w "$T/ef.ini" "${P[@]}" --set participation.sample=3
check "ef21-w: each included client keeps its h_i under --state" \
  "[ \$(ls '$T'/ef21-w/st*/client-*.state 2>/dev/null | wc -l) -ge 3 ]"
finish e2e-ef
