#!/usr/bin/env bash
# End-to-end test of the CLI's hardening (issue 12, items 7, 8, 11, 12):
# SIGHUP and broken pipes never kill a run unsaved, every command's stdout
# is checked (a full disk, a closed descriptor), plot caps every text at
# PLplot's limit, and the smaller refusals (an empty scenario, metrics
# --client of a client that never took part, a sweep --set of a varied key).
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_cli_XXXXXX)
trap 'rm -rf "$T"' EXIT
unset DISPLAY WAYLAND_DISPLAY
. "$(dirname "$0")/e2e_lib.sh"
Q="$ROOT/scenarios/fedavg-quadratic.ini"
S="$ROOT/scenarios/quickstart.ini"
# waits (up to 60 s) for a line matching $2 in file $1, while pid $3 lives
wait_for() {
  for _ in $(seq 600); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# 1. SIGHUP (a closed terminal, a dropped ssh session) stops a run as
#    SIGTERM does: the round finishes, the state is saved, 'interrupted',
#    exit 130, and --resume ends with the model of a run never stopped.
#    checkpoint_every = 0: the only state checkpoint is the one the signal
#    saves. Two SIGHUPs, as a hangup often delivers, must not kill it.
R=(--set run.rounds=30 --set run.checkpoint_every=0 --set data.clients=40 --set participation.sample=6)
"$FP" sim "$ROOT/scenarios/paper/scafcom-top1.ini" "${R[@]}" --store "$T/full.db" --quiet \
  >/dev/null 2>"$T/e" || { cat "$T/e"; bad "the uninterrupted scafcom run"; }
full_sha=$(sqlite3 "$T/full.db" 'select model_sha256 from runs where id=1')
"$FP" sim "$ROOT/scenarios/paper/scafcom-top1.ini" "${R[@]}" --store "$T/hup.db" --threads 1 \
  >"$T/hout" 2>"$T/herr" &
pid=$!
wait_for "$T/herr" 'round 2/' $pid
kill -HUP $pid; kill -HUP $pid
wait $pid; rc=$?
check "SIGHUP: exit 130" "[ $rc -eq 130 ]"
check "SIGHUP: status interrupted, rounds_done = committed rounds < 30" \
  "[ \"\$(sqlite3 '$T/hup.db' 'select status from runs')\" = interrupted ] && [ \"\$(sqlite3 '$T/hup.db' 'select rounds_done from runs')\" = \"\$(sqlite3 '$T/hup.db' 'select count(*) from rounds')\" ] && [ \$(sqlite3 '$T/hup.db' 'select rounds_done from runs') -lt 30 ]"
check "SIGHUP: a state checkpoint after the last committed round" \
  "[ \"\$(sqlite3 '$T/hup.db' \"select count(*) from checkpoints where kind='state' and round=(select rounds_done from runs)\")\" = 1 ]"
"$FP" sim --resume 1 --store "$T/hup.db" >"$T/rout" 2>&1; rc=$?
check "SIGHUP then --resume: exit 0, completed, the uninterrupted model's sha256" \
  "[ $rc -eq 0 ] && [ -n '$full_sha' ] && [ \"\$(sqlite3 '$T/hup.db' 'select status, model_sha256 from runs')\" = 'completed|$full_sha' ]"

# 1b. Under nohup (SIGHUP ignored from the start) SIGHUP stays ignored, and
#     an explicit SIGPIPE does nothing either: the run completes.
(trap '' HUP; exec "$FP" sim "$S" --set run.rounds=3 --store "$T/nohup.db" >/dev/null 2>"$T/nerr") &
pid=$!
wait_for "$T/nerr" 'round 1/' $pid
kill -HUP $pid; kill -PIPE $pid
wait $pid; rc=$?
check "nohup: SIGHUP and kill -PIPE ignored, the run completes" \
  "[ $rc -eq 0 ] && [ \"\$(sqlite3 '$T/nohup.db' 'select status, rounds_done from runs')\" = 'completed|3' ]"

# 2. A reader that goes away never kills the run: `2>&1 | head -1` reads
#    the header line and exits while the dataset loads.
"$FP" sim "$S" --set run.rounds=2 --store "$T/ref.db" --quiet >/dev/null 2>&1
ref_sha=$(sqlite3 "$T/ref.db" 'select model_sha256 from runs where id=1')
"$FP" sim "$S" --set run.rounds=2 --store "$T/head.db" 2>&1 | head -1 >"$T/first"
rc=${PIPESTATUS[0]}
check "sim 2>&1 | head -1: not killed by SIGPIPE (exit 1 for the lost summary, not 141)" \
  "[ $rc -eq 1 ] && grep -q '^\[quickstart\] fedavg' '$T/first'"
check "sim 2>&1 | head -1: the run is completed with the right model sha256" \
  "[ -n '$ref_sha' ] && [ \"\$(sqlite3 '$T/head.db' 'select status, model_sha256 from runs')\" = 'completed|$ref_sha' ]"
# A pipe whose reader is gone before the first write (no race): stdout to
# it, stderr to a file -> the summary's failure is said and exit 1; stderr
# to it, stdout to a file -> every progress line lost, exit 0.
broken_pipe() { # $1: which of stdout/stderr goes to the pipe; the rest: the command
  python3 - "$@" <<'EOF'
import os, subprocess, sys
which, cmd = sys.argv[1], sys.argv[2:]
r, w = os.pipe()
os.close(r)
log = open(os.environ["BP_LOG"], "wb")
p = subprocess.run(cmd, stdout=w if which == "stdout" else log,
                   stderr=w if which == "stderr" else log)
sys.exit(p.returncode)
EOF
}
BP_LOG="$T/bp1" broken_pipe stdout "$FP" sim "$Q" --set run.rounds=30 --store "$T/bp.db"; rc=$?
check "summary into a broken pipe: exit 1, says so on stderr, run completed" \
  "[ $rc -eq 1 ] && grep -q 'fedpress: writing the summary to stdout: Broken pipe (run 1 is completed' '$T/bp1' && [ \"\$(sqlite3 '$T/bp.db' 'select status from runs where id=1')\" = completed ]"
BP_LOG="$T/bp2" broken_pipe stderr "$FP" sim "$Q" --set run.rounds=30 --store "$T/bp.db"; rc=$?
check "progress into a broken pipe: dropped, exit 0, summary written, run completed" \
  "[ $rc -eq 0 ] && grep -q \"^run 2 'fedavg-quadratic' completed: 30/30\" '$T/bp2' && [ \"\$(sqlite3 '$T/bp.db' 'select status from runs where id=2')\" = completed ]"
BP_LOG="$T/bp3" broken_pipe stdout "$FP" sweep "$Q" --vary run.seed=1,2 --set run.rounds=30 \
  --store "$T/bps.db"; rc=$?
check "sweep into a broken pipe: both runs completed, exit 1" \
  "[ $rc -eq 1 ] && [ \"\$(sqlite3 '$T/bps.db' 'select group_concat(status) from runs')\" = completed,completed ]"

# 3. Every command checks its writes and its final flush: /dev/full and a
#    closed stdout are exit 1 with a message, never a silent exit 0.
"$FP" sim "$Q" --set run.rounds=5 --store "$T/o.db" --quiet >/dev/null 2>&1
"$FP" plot 1 --store "$T/o.db" --metric test_loss -o "$T/o.svg" >/dev/null 2>&1
cmds=("runs --store $T/o.db" "runs --store $T/o.db --format csv" "runs --store $T/o.db --format json"
      "metrics 1 --store $T/o.db" "metrics 1 --store $T/o.db --format csv"
      "metrics 1 --store $T/o.db --format json" "metrics 1 --store $T/o.db --clients"
      "help" "version" "sim --help" "sim $Q --dry-run"
      "sweep $Q --vary run.seed=1,2 --dry-run --store $T/o.db"
      "plot 1 --store $T/o.db --metric test_loss -o $T/o2.svg")
for c in "${cmds[@]}"; do
  # shellcheck disable=SC2086
  "$FP" $c >/dev/full 2>"$T/e"; rc=$?
  check "$c > /dev/full: exit 1, 'writing to stdout: No space left on device'" \
    "[ $rc -eq 1 ] && grep -q 'fedpress: writing to stdout: No space left on device' '$T/e'"
  # shellcheck disable=SC2086
  "$FP" $c >&- 2>"$T/e"; rc=$?
  check "$c >&-: exit 1, 'writing to stdout: Bad file descriptor'" \
    "[ $rc -eq 1 ] && grep -q 'fedpress: writing to stdout: Bad file descriptor' '$T/e'"
done
"$FP" sim "$Q" --set run.rounds=5 --store "$T/o.db" --quiet >&- 2>"$T/e"; rc=$?
check "sim >&-: exit 1, the summary's failure said, the run completed" \
  "[ $rc -eq 1 ] && grep -q 'writing the summary to stdout: Bad file descriptor (run 2 is completed' '$T/e' && [ \"\$(sqlite3 '$T/o.db' 'select status from runs where id=2')\" = completed ]"
"$FP" sweep "$Q" --vary run.seed=3,4 --set run.rounds=5 --store "$T/o.db" --quiet >/dev/full 2>"$T/e"; rc=$?
check "sweep > /dev/full: exit 1 (its table is lost), both runs completed" \
  "[ $rc -eq 1 ] && grep -q 'No space left on device' '$T/e' && [ \"\$(sqlite3 '$T/o.db' 'select count(*) from runs where status=\"completed\"')\" = 4 ]"
# a long listing stops at the first failed write instead of formatting the rest
"$FP" metrics 1 --store "$T/o.db" --clients --format json >/dev/full 2>"$T/e"; rc=$?
check "metrics --clients json > /dev/full: exit 1, one message" \
  "[ $rc -eq 1 ] && [ \$(wc -l <'$T/e') -eq 1 ]"

# 4. metrics --client of a client that never took part
"$FP" metrics 1 --store "$T/o.db" --client 999 >"$T/out" 2>"$T/e"; rc=$?
check "metrics --client 999 (20 clients): exit 1, names run, client and range, prints nothing" \
  "[ $rc -eq 1 ] && grep -q \"run 1 ('fedavg-quadratic') in $T/o.db has clients 0 to 19: there is no client 999\" '$T/e' && [ ! -s '$T/out' ]"
"$FP" metrics 1 --store "$T/o.db" --client 20 >/dev/null 2>"$T/e"; rc=$?
check "metrics --client 20 (one past the last): exit 1" "[ $rc -eq 1 ] && grep -q 'clients 0 to 19' '$T/e'"
never=$(sqlite3 "$T/o.db" "with recursive c(x) as (select 0 union all select x+1 from c where x < 19) select x from c where x not in (select client from client_rounds where run_id=1) limit 1")
if [ -n "$never" ]; then
  "$FP" metrics 1 --store "$T/o.db" --client "$never" --format csv >"$T/out" 2>"$T/e"; rc=$?
  check "metrics --client $never (in range, never sampled): exit 0, header only, a note naming it" \
    "[ $rc -eq 0 ] && [ \$(wc -l <'$T/out') -eq 1 ] && grep -q \"client $never of run 1 ('fedavg-quadratic') took part in none of its 5 stored rounds\" '$T/e'"
else
  bad "run 1 sampled every client: no never-sampled client to ask about"
fi
c1=$(sqlite3 "$T/o.db" "select client from client_rounds where run_id=1 limit 1")
"$FP" metrics 1 --store "$T/o.db" --client "$c1" --format csv >"$T/out" 2>"$T/e"; rc=$?
check "metrics --client $c1 (took part): its rows, no note" \
  "[ $rc -eq 0 ] && [ \$(wc -l <'$T/out') -eq \$((1 + \$(sqlite3 '$T/o.db' \"select count(*) from client_rounds where run_id=1 and client=$c1\"))) ] && [ ! -s '$T/e' ]"

# 5. sweep: a --set of a key it also varies is a usage error naming the key
"$FP" sweep "$Q" --vary algorithm.lr_local=0.05,0.1 --set algorithm.lr_local=0.2 \
  --store "$T/sv.db" >/dev/null 2>"$T/e"; rc=$?
check "sweep --set and --vary of one key: exit 2, names it, nothing run" \
  "[ $rc -eq 2 ] && grep -q 'algorithm.lr_local is given to both --set and --vary' '$T/e' && [ ! -e '$T/sv.db' ]"
"$FP" sweep "$Q" --vary algorithm.lr_local=0.05,0.1 --set algorithm.lr_local= \
  --store "$T/sv.db" >/dev/null 2>"$T/e"; rc=$?
check "sweep --set key= (removal) of a varied key: exit 2 too" "[ $rc -eq 2 ] && [ ! -e '$T/sv.db' ]"

# 6. scenario files: an empty one (or of comments only) is refused; a
#    malformed line is named; hex floats are not plain decimal
: >"$T/empty.ini"
"$FP" sim "$T/empty.ini" --store "$T/sc.db" >/dev/null 2>"$T/e"; rc=$?
check "empty scenario file: exit 2, 'sets no key', no store created" \
  "[ $rc -eq 2 ] && grep -q 'empty.ini: sets no key' '$T/e' && [ ! -e '$T/sc.db' ]"
printf '; just a comment\n[run]\n' >"$T/comments.ini"
"$FP" sim "$T/comments.ini" --set run.rounds=2 --store "$T/sc.db" >/dev/null 2>"$T/e"; rc=$?
check "comments and a header only, even with --set: exit 2" \
  "[ $rc -eq 2 ] && grep -q 'comments.ini: sets no key' '$T/e' && [ ! -e '$T/sc.db' ]"
"$FP" sweep "$T/empty.ini" --vary run.seed=1,2 --store "$T/sc.db" >/dev/null 2>"$T/e"; rc=$?
check "sweep of an empty file: exit 2" "[ $rc -eq 2 ] && grep -q 'sets no key' '$T/e'"
printf '[run\nname = x\n' >"$T/unterminated.ini"
"$FP" sim "$T/unterminated.ini" --dry-run >/dev/null 2>"$T/e"; rc=$?
check "unterminated [run: exit 2 naming line 1" \
  "[ $rc -eq 2 ] && grep -q \"unterminated.ini:1: section header '\[run' has no closing '\]'\" '$T/e'"
"$FP" sim "$Q" --set algorithm.lr_local=0x1p-3 --dry-run >/dev/null 2>"$T/e"; rc=$?
check "--set lr_local=0x1p-3: exit 2" "[ $rc -eq 2 ] && grep -q \"lr_local = '0x1p-3' is not valid\" '$T/e'"
"$FP" sim "$Q" --threads +2 --dry-run >/dev/null 2>"$T/e"; rc=$?
check "--threads +2: exit 2 (digits only, as in scenarios)" "[ $rc -eq 2 ] && grep -q \"threads '+2'\" '$T/e'"
"$FP" sim "$S" --set data.partition=dirichlet:1e308 --set run.rounds=1 --store "$T/sc.db" \
  >/dev/null 2>"$T/e"; rc=$?
check "dirichlet:1e308: exit 1, advises a smaller alpha, never a larger one" \
  "[ $rc -eq 1 ] && grep -q 'use a smaller alpha' '$T/e' && ! grep -q 'larger alpha' '$T/e'"

# 7. plot: every text within PLplot's limit (499 code points, '#' twice)
"$FP" sim "$Q" --set run.rounds=20 --store "$T/p.db" --quiet >/dev/null 2>&1
"$FP" sim "$Q" --set run.rounds=20 --set run.seed=2 --store "$T/p.db" --quiet >/dev/null 2>&1
"$FP" sim "$Q" --set run.rounds=20 --set run.seed=3 --store "$T/p.db" --quiet >/dev/null 2>&1
svgtext() {
  python3 -c '
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
for e in root.iter():
    if e.tag.endswith("}text") or e.tag == "text":
        print("".join(e.itertext()))' "$1"
}
long=$(python3 -c 'print("x" * 1026)')
for ext in svg png pdf; do
  "$FP" plot 1 --store "$T/p.db" --metric test_loss --title "$long" -o "$T/t.$ext" >/dev/null 2>"$T/e"; rc=$?
  check "plot --title of 1026 characters ($ext): usage error, no crash, no file" \
    "[ $rc -eq 2 ] && grep -q -- '--title is 1026 characters long; PLplot draws at most 499' '$T/e' && [ ! -e '$T/t.$ext' ] && [ -z \"\$(ls -A '$T' | grep fedpress-plot)\" ]"
done
t499=$(python3 -c 'print("y" * 499)')
"$FP" plot 1 --store "$T/p.db" --metric test_loss --title "$t499" -o "$T/t499.svg" >"$T/out" 2>"$T/e"; rc=$?
svgtext "$T/t499.svg" >"$T/t499.txt"
check "plot --title of 499 characters: drawn whole" "[ $rc -eq 0 ] && grep -qx '$t499' '$T/t499.txt'"
"$FP" plot 1 --store "$T/p.db" --metric test_loss --title "$t499" -o "$T/t499.png" >"$T/out" 2>"$T/e"; rc=$?
check "plot --title of 499 characters, png: exit 0, nothing from PLplot on stdout" \
  "[ $rc -eq 0 ] && [ \$(wc -l <'$T/out') -eq 1 ] && grep -q '^wrote ' '$T/out'"
t250=$(python3 -c 'print("#" * 250)')
"$FP" plot 1 --store "$T/p.db" --metric test_loss --title "$t250" -o "$T/t.svg" >/dev/null 2>"$T/e"; rc=$?
check "plot --title of 250 '#' (500 units): usage error" "[ $rc -eq 2 ] && grep -q 'is 500 characters long' '$T/e'"
"$FP" plot 1 --store "$T/p.db" --metric test_loss --title "$(printf 'bad \377 utf-8')" -o "$T/t.svg" >/dev/null 2>"$T/e"; rc=$?
check "plot --title not UTF-8: usage error" "[ $rc -eq 2 ] && grep -q 'not valid UTF-8' '$T/e'"
# names from the store can be anything: cut with an ellipsis, never inside
# a UTF-8 sequence, the "(algorithm + compressor)" kept whole
sqlite3 "$T/p.db" "update runs set name = '$(python3 -c 'print("n" * 2000)')' where id = 1;
  update runs set name = '$(python3 -c 'print("é€😀" * 700)')' where id = 2;
  update runs set name = '$(python3 -c 'print("#" * 600)')' where id = 3"
for ext in svg png pdf; do
  "$FP" plot 1 2 3 --store "$T/p.db" --metric test_loss -o "$T/n.$ext" >/dev/null 2>"$T/e"; rc=$?
  check "plot of runs with 2000-character names ($ext): exit 0, a file" "[ $rc -eq 0 ] && [ -s '$T/n.$ext' ]"
done
svgtext "$T/n.svg" >"$T/n.txt"
check "legend: a 2000-character name cut to 499 units with an ellipsis, its algorithm kept" \
  "python3 -c '
import sys
t = [l for l in open(sys.argv[1], encoding=\"utf-8\").read().split(\"\n\") if l.startswith(\"nnn\")]
assert len(t) == 1 and len(t[0]) == 499 and t[0].endswith(\"n\u2026 (fedavg + identity)\"), t
' '$T/n.txt'"
check "legend: a multibyte name cut at a code point (valid UTF-8), 499 units" \
  "python3 -c '
import sys
t = [l for l in open(sys.argv[1], encoding=\"utf-8\", errors=\"strict\").read().split(\"\n\") if l.startswith(\"é€\")]
assert len(t) == 1 and len(t[0]) == 499 and t[0].endswith(\"\u2026 (fedavg + identity)\"), t
assert set(t[0][:-len(\"\u2026 (fedavg + identity)\")]) <= set(\"é€😀\"), t
' '$T/n.txt'"
check "legend: '#' counts twice (escaped for PLplot): 600 of them cut to 239" \
  "python3 -c '
import sys
t = [l for l in open(sys.argv[1], encoding=\"utf-8\").read().split(\"\n\") if l.startswith(\"###\")]
assert len(t) == 1 and t[0] == \"#\" * 239 + \"\u2026 (fedavg + identity)\", t
' '$T/n.txt'"

finish e2e_cli
