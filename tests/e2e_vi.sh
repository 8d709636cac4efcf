#!/usr/bin/env bash
# End-to-end test of the variational-inequality methods (EG, eg-naive,
# MASHA1, MASHA2) on the bilinear workload, with the real binary: exact
# uplink and downlink bytes, the same bytes at 1 and 2 threads, kill -9 then
# --resume ending with the model of a run never stopped, and a coordinator
# with client daemons ending with the simulator's model and metrics.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
T=$(mktemp -d /tmp/fp_e2e_vi_XXXXXX)
PIDS=()
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
trap end_jobs EXIT

cat >"$T/vi.ini" <<'INI'
[run]
name = vi
seed = 3
rounds = 12
eval_every = 4
[data]
dataset = bilinear
clients = 6
dim = 20
heterogeneity = 0.5
lambda = 0.5
[algorithm]
name = eg
step = 0.2
INI
sums() { sqlite3 "$1" "select sum(uplink_bytes) || ' ' || sum(downlink_bytes) from rounds where run_id=1"; }

# 1. exact bytes, d = 40 (dense 160 bytes). EG: two dense exchanges each
#    way per round. MASHA2 with top-4 (min(64*4, 32*4 + 40) = 168 bits = 21
#    bytes) both ways and tau = 0 (a refresh every round): up 21 + 160, down
#    160 + 21 per client and round, plus round 1's dense z_0 / F_m(z_0).
"$FP" sim "$T/vi.ini" --store "$T/eg.db" --quiet >"$T/eg.out" 2>"$T/eg.err"
check "eg: completes" "[ $? -eq 0 ] && grep -q 'completed: 12/12 rounds, eg bilinear' '$T/eg.out'"
check "eg: uplink and downlink bytes = 23040 each" "[ \"\$(sums '$T/eg.db')\" = '23040 23040' ]"
M2=(--set algorithm.name=masha2 --set compressor.name=topk --set compressor.downlink=topk
    --set compressor.k=4)
"$FP" sim "$T/vi.ini" "${M2[@]}" --set algorithm.tau=0 --store "$T/m2.db" --quiet >"$T/m2.out" 2>&1
check "masha2, tau = 0: uplink and downlink bytes = 13992 each" \
  "[ \"\$(sums '$T/m2.db')\" = '13992 13992' ]"
for a in eg-naive masha1; do
  "$FP" sim "$T/vi.ini" --set algorithm.name=$a --set compressor.name=randk \
    --set compressor.downlink=randk --set compressor.ratio=0.25 --set algorithm.step=0.05 \
    --store "$T/$a.db" --quiet >"$T/$a.out" 2>&1
  check "$a (rand-k both ways): completes" "grep -q 'completed: 12/12 rounds, $a bilinear' '$T/$a.out'"
done

# 2. the same bytes at 1 and 2 threads (rand-k masks and the coin from keyed streams)
P=(--set algorithm.name=masha1 --set compressor.name=randk --set compressor.downlink=randk
   --set compressor.ratio=0.25 --set run.rounds=60)
"$FP" sim "$T/vi.ini" "${P[@]}" --store "$T/t1.db" --threads 1 --quiet >"$T/t1.out" 2>&1
"$FP" sim "$T/vi.ini" "${P[@]}" --store "$T/t2.db" --threads 2 --quiet >"$T/t2.out" 2>&1
check "masha1: the same model at 1 and 2 threads" \
  "[ -n \"\$(fp_sha '$T/t1.out')\" ] && [ \"\$(fp_sha '$T/t1.out')\" = \"\$(fp_sha '$T/t2.out')\" ]"
check "... and the same metrics and bytes" \
  "[ \"\$(\"$FP\" metrics 1 --store '$T/t1.db' --format csv | cut -d, -f1-7)\" = \"\$(\"$FP\" metrics 1 --store '$T/t2.db' --format csv | cut -d, -f1-7)\" ]"
"$FP" sim "$T/vi.ini" "${P[@]}" --set participation.sample=4 --store "$T/pp.db" >/dev/null 2>"$T/pp.err"
check "masha1 with sample < clients is refused, saying why" \
  "[ $? -ne 0 ] && grep -q 'every client in every round' '$T/pp.err'"

# 3. kill -9 mid-run, then --resume: the same model bytes as a run never
#    stopped (the state holds z, w, F(w), e_s and every device's z, w, F(w),
#    F_m(w), e_m)
R=(--set run.rounds=4000 --set run.eval_every=500 --set run.checkpoint_every=7
   --set data.clients=20 --set data.dim=150 --set algorithm.step=0.1 "${M2[@]}" --set compressor.k=30)
resume_after_kill vi "$T/vi.ini" "${R[@]}"

# 4. the daemons: a coordinator and 4 clients over loopback, MASHA2 with
#    compressed broadcasts and coins, end with the simulator's model and metrics
N=4
make_keys $N
daemon_run masha2 "$T/vi.ini" "${M2[@]}" --set run.rounds=20
finish e2e-vi
