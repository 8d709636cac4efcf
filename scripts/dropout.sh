#!/usr/bin/env bash
# What [participation] dropout does to FedAvg, SCAFFOLD and SCAFCOM
# (docs/results.md, "Dropout"): the paper's Fashion-MNIST MLP scenarios
# (scenarios/paper/) with fewer rounds, at dropout 0, 0.1 and 0.3, for seeds
# 1..N, then a markdown table of the means over the seeds on stdout.
# A dropout run sets deadline = 60 and min_updates = 1 (a round needs one
# upload; no straggler model, so nobody is late): the effect is dropout's alone.
#
#   scripts/dropout.sh [--rounds R] [--seeds N] [--store PATH] [--threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=100 seeds=2 store=dropout.db threads=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --store) store=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "dropout.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x build/fedpress ] || { echo "dropout.sh: build fedpress first (bash scripts/bootstrap.sh)" >&2; exit 1; }
algos=(fedavg scaffold scafcom-top1)
for a in "${algos[@]}"; do
  for p in 0 0.1 0.3; do
    for s in $(seq 1 "$seeds"); do
      run="$a-drop$p-s$s"
      if [ -f "$store" ] && [ "$(sqlite3 "$store" "select count(*) from runs where name = '$run' and status = 'completed'" 2>/dev/null)" = 1 ]; then
        continue
      fi
      extra=()
      [ "$p" = 0 ] || extra=(--set participation.deadline=60 --set participation.min_updates=1 \
        --set "participation.dropout=$p")
      echo "dropout: $run" >&2
      build/fedpress sim "scenarios/paper/$a.ini" --quiet --threads "$threads" --store "$store" \
        --set "run.rounds=$rounds" --set run.eval_every=10 --set "run.seed=$s" \
        --set "run.name=$run" "${extra[@]}" >/dev/null
    done
  done
done
echo "| algorithm | dropout | final test accuracy | final test loss | uplink (MB) | downlink (MB) | uploads included per round |"
echo "|---|---|---|---|---|---|---|"
for a in "${algos[@]}"; do
  for p in 0 0.1 0.3; do
    sqlite3 -separator ' | ' "$store" "
      select '| $a', '$p',
             printf('%.4f', avg(final_test_accuracy)), printf('%.4f', avg(final_test_loss)),
             printf('%.1f', avg(uplink_bytes) / 1e6), printf('%.1f', avg(downlink_bytes) / 1e6),
             printf('%.2f |', (select avg(participants) from rounds r join runs u on u.id = r.run_id
                               where u.name like '$a-drop$p-s%' and u.status = 'completed'))
      from runs where name like '$a-drop$p-s%' and status = 'completed'"
  done
done
