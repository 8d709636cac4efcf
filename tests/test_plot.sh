#!/usr/bin/env bash
# End-to-end test of `fedpress plot`: real runs (two quadratic, loss only; one
# tiny Fashion-MNIST, with accuracy), plotted to SVG, PNG and PDF without a
# display; the files' formats and contents; the byte axes; exit codes and
# messages for bad input; no stray files after success or failure.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_plot_XXXXXX)
trap 'rm -rf "$T"' EXIT
unset DISPLAY WAYLAND_DISPLAY
. "$(dirname "$0")/e2e_lib.sh"
# The text of every <text> element of an SVG, one per line; fails unless the
# file is well-formed XML with an <svg> root.
svgtext() {
  python3 -c '
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag.endswith("svg"), root.tag
for e in root.iter():
    if e.tag.endswith("}text") or e.tag == "text":
        print("".join(e.itertext()))' "$1"
}

# 1. a store with three runs
"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --store "$T/s.db" --quiet >/dev/null 2>"$T/e" \
  || { cat "$T/e"; bad "fedavg-quadratic run"; }
"$FP" sim "$ROOT/scenarios/scaffold-quadratic.ini" --store "$T/s.db" --quiet >/dev/null 2>"$T/e" \
  || { cat "$T/e"; bad "scaffold-quadratic run"; }
"$FP" sim "$ROOT/scenarios/quickstart.ini" --store "$T/s.db" --quiet --set run.rounds=2 \
  >/dev/null 2>"$T/e" || { cat "$T/e"; bad "quickstart run"; }
check "store holds runs 1-3" "[ \"\$(sqlite3 '$T/s.db' 'select group_concat(id) from runs')\" = 1,2,3 ]"
eval1=$(sqlite3 "$T/s.db" 'select count(*) from rounds where run_id=1 and test_loss is not null')
eval2=$(sqlite3 "$T/s.db" 'select count(*) from rounds where run_id=2 and test_loss is not null')
check "quadratic runs evaluate only some rounds" "[ $eval1 -gt 1 ] && [ $eval1 -lt 200 ]"

# 2. the quadratic runs' test loss in all three formats
for ext in svg png pdf; do
  "$FP" plot 1 2 --store "$T/s.db" --metric test_loss -o "$T/q.$ext" >"$T/out.$ext" 2>"$T/err.$ext"
  rc=$?
  check "$ext: exit 0, nothing on stderr" "[ $rc -eq 0 ] && [ ! -s '$T/err.$ext' ]"
  check "$ext: file is not empty" "[ -s '$T/q.$ext' ]"
  check "$ext: skips unevaluated rounds ($eval1 + $eval2 points)" \
    "grep -q 'wrote $T/q.$ext: test_loss vs round, 2 runs, $((eval1 + eval2)) points' '$T/out.$ext'"
done
check "png starts with the PNG signature" \
  "[ \"\$(head -c 8 '$T/q.png' | od -An -tx1 | tr -d ' \n')\" = 89504e470d0a1a0a ]"
check "pdf starts with %PDF-" "[ \"\$(head -c 5 '$T/q.pdf')\" = '%PDF-' ]"
svgtext "$T/q.svg" >"$T/q.txt" 2>"$T/e"; rc=$?
check "svg is well-formed XML with an <svg> root" "[ $rc -eq 0 ]"
check "svg legend names run 1 as 'name (algorithm + compressor)'" \
  "grep -qxF 'fedavg-quadratic (fedavg + identity)' '$T/q.txt'"
check "svg legend names run 2" "grep -qxF 'scaffold-quadratic (scaffold + identity)' '$T/q.txt'"
check "svg default title and axis labels" \
  "grep -qxF 'test_loss vs round' '$T/q.txt' && grep -qxF 'test loss' '$T/q.txt' && grep -qxF round '$T/q.txt'"
check "no temporary files left behind" "! ls -A '$T' | grep -q fedpress-plot"

# 3. accuracy (the default metric) of the Fashion-MNIST run, and the byte axes
"$FP" plot 3 --store "$T/s.db" -o "$T/acc.png" >"$T/out" 2>"$T/e"; rc=$?
check "accuracy plot: exit 0, 2 points" \
  "[ $rc -eq 0 ] && [ -s '$T/acc.png' ] && grep -q 'test_accuracy vs round, 1 run, 2 points' '$T/out'"
"$FP" plot 1 2 3 --store "$T/s.db" --metric train_loss --x uplink_bytes -o "$T/up.svg" \
  --title 'uplink #1' >"$T/out" 2>"$T/e"; rc=$?
check "--x uplink_bytes: exit 0, every round of all 3 runs" \
  "[ $rc -eq 0 ] && grep -q 'train_loss vs uplink_bytes, 3 runs, 402 points' '$T/out'"
svgtext "$T/up.svg" >"$T/up.txt"
check "--x uplink_bytes: axis says cumulative MB; '#' in --title kept" \
  "grep -qxF 'cumulative uplink (MB)' '$T/up.txt' && grep -qxF 'uplink #1' '$T/up.txt'"
"$FP" plot 1 2 --store "$T/s.db" --metric test_loss --x downlink_bytes --logx --logy \
  -o "$T/down.pdf" >/dev/null 2>"$T/e"; rc=$?
check "--x downlink_bytes --logx --logy: exit 0" "[ $rc -eq 0 ] && [ -s '$T/down.pdf' ]"

# 4. a store from before the compressor column was filled: legend shows the algorithm only
cp "$T/s.db" "$T/old.db"
sqlite3 "$T/old.db" 'update runs set compressor = NULL where id = 1'
"$FP" plot 1 --store "$T/old.db" --metric test_loss -o "$T/old.svg" >/dev/null 2>"$T/e"; rc=$?
svgtext "$T/old.svg" >"$T/old.txt"
check "NULL compressor: legend 'name (algorithm)'" \
  "[ $rc -eq 0 ] && grep -qxF 'fedavg-quadratic (fedavg)' '$T/old.txt'"

# 5. errors
"$FP" plot 1 99 --store "$T/s.db" --metric test_loss -o "$T/miss.svg" 2>"$T/e"; rc=$?
check "missing run: exit 1, names the run and the store, no file" \
  "[ $rc -eq 1 ] && grep -qF 'no run 99 in $T/s.db' '$T/e' && [ ! -e '$T/miss.svg' ]"
"$FP" plot 1 --store "$T/s.db" -o "$T/none.svg" 2>"$T/e"; rc=$?
check "nothing to plot (no accuracy on quadratic): exit 1, says so" \
  "[ $rc -eq 1 ] && grep -q \"run 1 'fedavg-quadratic' has no rounds with test_accuracy\" '$T/e' && [ ! -e '$T/none.svg' ]"
"$FP" plot 1 --store "$T/s.db" --metric test_loss -o "$T/x.jpg" 2>"$T/e"; rc=$?
check "bad extension: exit 2, lists the allowed ones" \
  "[ $rc -eq 2 ] && grep -qF '.svg, .png or .pdf' '$T/e' && [ ! -e '$T/x.jpg' ]"
"$FP" plot 1 --store "$T/typo.db" --metric test_loss -o "$T/typo.svg" 2>"$T/e"; rc=$?
check "no such store: exit 1, no store and no plot created" \
  "[ $rc -eq 1 ] && grep -q 'no such run store' '$T/e' && [ ! -e '$T/typo.db' ] && [ ! -e '$T/typo.svg' ]"
"$FP" plot 1 --store "$T/s.db" --metric accuracy 2>"$T/e"; rc=$?
check "bad --metric: exit 2" "[ $rc -eq 2 ] && grep -q 'expected test_accuracy, test_loss or train_loss' '$T/e'"
"$FP" plot 1 --store "$T/s.db" --x time 2>"$T/e"; rc=$?
check "bad --x: exit 2" "[ $rc -eq 2 ]"
"$FP" plot --store "$T/s.db" 2>"$T/e"; rc=$?
check "no run given: exit 2" "[ $rc -eq 2 ] && grep -q 'no run id given' '$T/e'"
"$FP" plot one --store "$T/s.db" 2>/dev/null; rc=$?
check "non-numeric run id: exit 2" "[ $rc -eq 2 ]"
"$FP" plot 1 --store "$T/s.db" --bogus 2>/dev/null; rc=$?
check "unknown option: exit 2" "[ $rc -eq 2 ]"
"$FP" plot 1 --store "$T/s.db" --metric test_loss -o "$T/nodir/x.svg" 2>"$T/e"; rc=$?
check "unwritable output directory: exit 1, names the file" "[ $rc -eq 1 ] && grep -qF '$T/nodir/x.svg' '$T/e'"
"$FP" plot --help >"$T/h"; rc=$?
check "plot --help: exit 0, documents --metric and --x" \
  "[ $rc -eq 0 ] && grep -q -- '--metric M' '$T/h' && grep -q -- '--x X' '$T/h'"
# Into a file, not `| grep -q`: grep -q may exit before the help is all
# written, and fedpress then rightly fails its write (pipefail sees it).
"$FP" help >"$T/help"; rc=$?
check "fedpress help lists plot" "[ $rc -eq 0 ] && grep -q '^  plot RUN\.\.\.' '$T/help'"
check "no temporary files left behind after errors" "! ls -A '$T' | grep -q fedpress-plot"

finish test_plot
