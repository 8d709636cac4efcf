#!/usr/bin/env bash
# Runs the paper-style reproduction: every scenario in scenarios/paper/ for
# seeds 1..N into one run store, then writes the results table and the
# figures. Runs already completed in the store are skipped, so an
# interrupted sweep picks up where it stopped.
#
#   scripts/reproduce.sh [--seeds N] [--store PATH] [--threads N] [--out DIR]
#                        [--rounds R] [--only NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=3 store=results.db threads=2 out=docs/img rounds="" only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds=$2; shift 2 ;;
    --store) store=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "reproduce.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x build/fedpress ] || { echo "reproduce.sh: build fedpress first (bash scripts/bootstrap.sh)" >&2; exit 1; }
# A private copy of the binary: a rebuild during the sweep must not change
# the code of the runs still to come.
FP=$(mktemp "${TMPDIR:-/tmp}/fedpress.XXXXXX")
trap 'rm -f "$FP"' EXIT
cp build/fedpress "$FP"
chmod 755 "$FP"
mkdir -p "$out"

# 0 if the store holds a completed run of that name (a store without the
# runs table, e.g. an empty file, holds none).
completed() {
  local c
  [ -f "$store" ] || return 1
  c=$(sqlite3 "$store" "select count(*) from runs where name='$1' and status='completed'" 2>/dev/null) || return 1
  [ "$c" != 0 ]
}

names=()
for f in scenarios/paper/*.ini; do
  n=$(basename "$f" .ini)
  [ -z "$only" ] || [ "$n" = "$only" ] || continue
  names+=("$n")
  for s in $(seq 1 "$seeds"); do
    run="$n-s$s"
    if completed "$run"; then
      echo "reproduce: $run already completed, skipping" >&2
      continue
    fi
    extra=()
    [ -z "$rounds" ] || extra+=(--set "run.rounds=$rounds")
    echo "reproduce: $run" >&2
    "$FP" sim "$f" --quiet --threads "$threads" --store "$store" \
      --set "run.seed=$s" --set "run.name=$run" "${extra[@]}"
  done
done

# The table: per scenario, over its completed seeds, the final test accuracy,
# the mean of the last 5 evaluations (the accuracy swings from one round to
# the next with 2 classes per client), and the uplink of one run.
sqlite3 -header -markdown "$store" "
WITH last AS (
  SELECT r.name, r.seed, r.algorithm, r.compressor, r.uplink_bytes, r.final_test_accuracy AS final,
         (SELECT avg(test_accuracy) FROM (SELECT test_accuracy FROM rounds x
            WHERE x.run_id = r.id AND x.test_accuracy IS NOT NULL ORDER BY round DESC LIMIT 5))
           AS last5
  FROM runs r WHERE r.status = 'completed' )
SELECT substr(name, 1, length(name) - length('-s' || seed)) AS scenario,
       algorithm, compressor, count(*) AS seeds,
       printf('%.2f', 100 * avg(final)) AS final_acc_pct,
       printf('%.2f', 100 * avg(last5)) AS last5_acc_pct,
       printf('%.2f', 100 * (max(last5) - min(last5))) AS last5_spread,
       printf('%.1f', avg(uplink_bytes) / 1e6) AS uplink_MB
FROM last WHERE name = substr(name, 1, length(name) - length('-s' || seed)) || '-s' || seed
GROUP BY scenario ORDER BY algorithm, compressor;" | tee "$out/results-table.md"

# Figures from seed 1 of every scenario.
ids=$(sqlite3 "$store" "select group_concat(id, ' ') from (select max(id) id from runs where status='completed' and name GLOB '*-s1' group by name order by name)")
if [ -n "$ids" ] && "$FP" plot --help >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  "$FP" plot $ids --store "$store" --metric test_accuracy --x round -o "$out/accuracy-vs-rounds.png" \
    --title "Fashion-MNIST, N=200 (2 classes each), S=20, K=10: seed 1"
  # shellcheck disable=SC2086
  "$FP" plot $ids --store "$store" --metric test_accuracy --x uplink_bytes --logx \
    -o "$out/accuracy-vs-uplink.png" --title "Test accuracy vs cumulative uplink (log scale): seed 1"
  echo "reproduce: figures in $out/" >&2
fi
