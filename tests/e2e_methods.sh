#!/usr/bin/env bash
# End-to-end test of every issue-15 method over loopback: for each of eg,
# eg-naive, masha1, masha2, ef21, ef21-w, econtrol and ef14 (the files of
# scenarios/vi and scenarios/ef21, shrunk to 4 clients, a tiny dimension and
# a few rounds), a coordinator and 4 `fedpress client` processes on
# 127.0.0.1 end with the model SHA-256 of `fedpress sim` of the same
# scenario, and `fedpress sim --replay` of the coordinator's run says exact;
# and so does ef21 with a compressed broadcast (EF21-BC), whose downlink
# bytes the coordinator's store counts exactly, which the simulator runs
# bit-identically at 1 and 2 threads and resumes after kill -9.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d /tmp/fp_e2e_methods_XXXXXX)
PIDS=()
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
trap end_jobs EXIT

N=4
make_keys $N

# the bilinear problem in R^20 (dim = 10 per player); rand-k and top-k of
# 10 % of d keep 2 coordinates each way
VI=(--set data.dim=10 --set run.rounds=12 --set run.eval_every=4)
for a in eg eg-naive masha1 masha2; do
  daemon_run "$a" "$SRC/scenarios/vi/$a.ini" "${VI[@]}"
done
# the step from the theory (L, L_m and omega computed by every party from the
# scenario): the coordinator and each client must compute the same number
daemon_run masha2-theory "$SRC/scenarios/vi/masha2.ini" "${VI[@]}" --set algorithm.step=theory
# least squares in R^12, 24 rows per client, top-2
EF=(--set data.dim=12 --set data.rows=24 --set algorithm.batch=24 --set run.rounds=15
    --set run.eval_every=5)
for f in ef21 ef21w econtrol ef14; do
  daemon_run "$f" "$SRC/scenarios/ef21/$f-lsq.ini" "${EF[@]}"
done
# EF21-BC: top-2 of d = 12 down too, min(64*2, 32*2 + 12) = 76 bits = 10
# bytes, after round 1's dense x^0 (48 bytes): 4 clients * (48 + 14 * 10)
daemon_run ef21-bc "$SRC/scenarios/ef21/ef21-lsq.ini" "${EF[@]}" --set compressor.downlink=topk
check "ef21-bc: the coordinator's store counts 752 downlink bytes" \
  "[ \"\$(sqlite3 '$T/ef21-bc/coord.db' 'select sum(downlink_bytes) from rounds where run_id=1')\" = 752 ]"

# EF21-BC in the simulator: the same bytes at 1 and 2 threads, and kill -9
# then --resume ending with the model of a run never stopped (the state
# holds x, g, w and every client's h_i and w)
B=(--set compressor.downlink=topk)
"$FP" sim "$SRC/scenarios/ef21/ef21-lsq.ini" "${B[@]}" --set run.rounds=300 --store "$T/t1.db" \
  --threads 1 --quiet >"$T/t1.out" 2>&1
"$FP" sim "$SRC/scenarios/ef21/ef21-lsq.ini" "${B[@]}" --set run.rounds=300 --store "$T/t2.db" \
  --threads 2 --quiet >"$T/t2.out" 2>&1
check "ef21-bc: the same model at 1 and 2 threads" \
  "[ -n \"\$(fp_sha '$T/t1.out')\" ] && [ \"\$(fp_sha '$T/t1.out')\" = \"\$(fp_sha '$T/t2.out')\" ]"
check "... and the same metrics and bytes" \
  "[ \"\$(\"$FP\" metrics 1 --store '$T/t1.db' --format csv | cut -d, -f1-7)\" = \"\$(\"$FP\" metrics 1 --store '$T/t2.db' --format csv | cut -d, -f1-7)\" ]"
R=("${B[@]}" --set run.rounds=3000 --set run.eval_every=500 --set run.checkpoint_every=7
   --set data.dim=100 --set data.rows=200 --set algorithm.batch=200 --set compressor.k=5)
resume_after_kill ef21-bc "$SRC/scenarios/ef21/ef21-lsq.ini" "${R[@]}"
finish e2e-methods
