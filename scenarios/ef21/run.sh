#!/bin/bash
# scenarios/ef21/run.sh — the EF21 table of docs/results.md: runs the four
# scenarios of this directory at their theory steps and at tuned steps into
# STORE (default ef21.db; a fresh file, run ids 1-9), then prints the table.
# From the source root: STORE=ef21.db bash scenarios/ef21/run.sh
set -e
S=${STORE:-ef21.db}; FP=${FP:-build/fedpress}; D=scenarios/ef21
[ ! -e "$S" ] || { echo "$S exists: give a fresh STORE" >&2; exit 1; }
run() { $FP sim "$@" --store "$S" --quiet >/dev/null; }
run $D/ef21-lsq.ini --set compressor.name=identity --set compressor.k= --set run.name=gd-identity
run $D/ef21-lsq.ini
run $D/ef21w-lsq.ini
run $D/econtrol-lsq.ini
run $D/ef14-lsq.ini
run $D/ef21-lsq.ini --set algorithm.step_scale=32 --set run.name=ef21-lsq-x32
run $D/ef21w-lsq.ini --set algorithm.step_scale=16 --set run.name=ef21w-lsq-x16
run $D/econtrol-lsq.ini --set algorithm.step_scale=16 --set algorithm.eta=0.05 --set run.name=econtrol-lsq-x16-eta0.05
run $D/ef14-lsq.ini --set algorithm.step_scale=0.5 --set run.name=ef14-lsq-x0.5
echo "| run | rounds to gap ≤ 1e-6 | uplink kB then | rounds to gap ≤ 1e-10 | uplink kB then | final gap (4000 rounds) | uplink kB total |"
echo "|---|---:|---:|---:|---:|---:|---:|"
sqlite3 -separator ' | ' "$S" "
with hit as (select r.id, r.name,
  (select min(round) from rounds where run_id=r.id and test_loss <= 1e-6) as r6,
  (select min(round) from rounds where run_id=r.id and test_loss <= 1e-10) as r10
  from runs r)
select '| ' || name, coalesce(r6, '—'),
  case when r6 is null then '—' else printf('%.1f', (select sum(uplink_bytes) from rounds where run_id=id and round <= r6) / 1000.0) end,
  coalesce(r10, '—'),
  case when r10 is null then '—' else printf('%.1f', (select sum(uplink_bytes) from rounds where run_id=id and round <= r10) / 1000.0) end,
  printf('%.3g', (select test_loss from rounds where run_id=id and round = 4000)),
  printf('%.1f', (select sum(uplink_bytes) from rounds where run_id=id) / 1000.0) || ' |'
from hit order by id"
