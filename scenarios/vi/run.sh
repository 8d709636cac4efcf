#!/bin/bash
# scenarios/vi/run.sh — the VI tables of docs/results.md: runs the four
# scenarios of this directory (each at the best step of the sweep in
# docs/results.md), plus EG at MASHA2's step, into STORE (default vi.db; a
# fresh file, run ids 1-5), then the same four methods on robust-lsq
# (dim 20, rows 40; ids 6-9) at their best steps there, then prints the
# table of all nine.
# From the source root: STORE=vi.db bash scenarios/vi/run.sh
set -e
S=${STORE:-vi.db}; FP=${FP:-build/fedpress}; D=scenarios/vi
[ ! -e "$S" ] || { echo "$S exists: give a fresh STORE" >&2; exit 1; }
run() { $FP sim "$@" --store "$S" --quiet >/dev/null; }
run $D/eg.ini
run $D/masha1.ini
run $D/masha2.ini
run $D/eg-naive.ini
run $D/eg.ini --set algorithm.step=0.1 --set run.name=vi-eg-0.1
RL=(--set data.dataset=robust-lsq --set data.dim=20 --set data.rows=40)
run $D/eg.ini "${RL[@]}" --set algorithm.step=0.3 --set run.name=robust-eg
run $D/masha1.ini "${RL[@]}" --set algorithm.step=0.1 --set run.name=robust-masha1
run $D/masha2.ini "${RL[@]}" --set algorithm.step=0.25 --set run.name=robust-masha2
run $D/eg-naive.ini "${RL[@]}" --set algorithm.step=0.2 --set run.name=robust-eg-naive
echo "| run | step | rounds to ‖z−z*‖² ≤ 1e-6·‖z₀−z*‖² | uplink kB | downlink kB | total kB | relative ‖z−z*‖² after 3000 rounds |"
echo "|---|---:|---:|---:|---:|---:|---:|"
sqlite3 -separator ' | ' "$S" "
with hit as (select r.id, r.name, (select min(round) from rounds where run_id=r.id and test_loss <= 1e-6) as r6 from runs r)
select '| ' || name,
  (select substr(scenario, instr(scenario, 'step = ') + 7, instr(substr(scenario, instr(scenario, 'step = ') + 7), char(10)) - 1) from runs where id=hit.id),
  coalesce(r6, '— (stalls)'),
  case when r6 is null then '—' else printf('%.1f', (select sum(uplink_bytes) from rounds where run_id=id and round <= r6) / 1000.0) end,
  case when r6 is null then '—' else printf('%.1f', (select sum(downlink_bytes) from rounds where run_id=id and round <= r6) / 1000.0) end,
  case when r6 is null then '—' else printf('%.1f', (select sum(uplink_bytes + downlink_bytes) from rounds where run_id=id and round <= r6) / 1000.0) end,
  printf('%.3g', (select test_loss from rounds where run_id=id and round = 3000)) || ' |'
from hit order by id"
