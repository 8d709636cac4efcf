#!/usr/bin/env bash
# End-to-end checks that keep the daemons' docs true: README.md,
# docs/deployment.md, docs/daemons.md, docs/protocol.md and docs/store.md
# held against `fedpress coordinator|client|keygen --help` and a real store.
#  - options: every --flag the docs give a coordinator, client or keygen
#    command (command lines, timer tables, daemons.md's option items) is in
#    that command's --help, every option in --help is documented, and every
#    default the docs state is --help's (tests/docs_check.py);
#  - the systemd units' ExecStart lines of docs/deployment.md parse: run as
#    written (the binary under test for /usr/local/bin/fedpress), each fails
#    on its first missing file (exit 1, naming it), never on an option;
#  - the exit codes the units rely on (2 for a bad option or scenario, 0 for
#    a completed run under --resume-or-start);
#  - SQL: every ```sh block of docs/deployment.md and docs/store.md that
#    starts with sqlite3 runs without an error on the store of a short
#    coordinator run (schema 6), and no other block starts with sqlite3;
#  - docs/protocol.md's example key file: its public key comment is the one
#    fedpress keygen --public derives.
# FP_SOURCE_ROOT may name a copy of the tree (to see a broken doc fail).
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d /tmp/fp_e2e_docs_XXXXXX)
. "$HERE/e2e_lib.sh"
trap 'end_jobs' EXIT

# --- options: the docs against --help
mkdir -p "$T/help"
for c in coordinator client keygen; do "$FP" "$c" --help >"$T/help/$c.txt"; done
"$FP" help >"$T/help/all.txt" 2>&1
python3 "$HERE/docs_check.py" "$T/help" "$ROOT" >"$T/opts" 2>&1
check "tests/docs_check.py ran (5 or more checks)" "[ \$(grep -c '^\(OK\|BAD\)' '$T/opts') -ge 5 ]"
while IFS=$'\t' read -r verdict name why; do
  case $verdict in
    OK) ok "$name" ;;
    BAD) bad "$name"; echo "     $why" ;;
    *) bad "docs_check.py: $verdict $name" ;;
  esac
done <"$T/opts"

# --- the systemd units' command lines parse
awk '/^```ini/ { m = 1; next } m && /^```/ { m = 0 } m' "$ROOT/docs/deployment.md" |
  awk '/^ExecStart=/ { l = $0; while (l ~ /\\$/) { sub(/\\$/, "", l); getline n; l = l n } print substr(l, 11) }' \
    >"$T/exec"
check "docs/deployment.md has the coordinator's and the client's ExecStart lines" \
  "[ \$(grep -c ' coordinator \| client ' '$T/exec') -eq 2 ]"
if [ -e /etc/fedpress ] || [ -e /var/lib/fedpress ]; then
  skip "ExecStart lines: /etc/fedpress or /var/lib/fedpress exists here, the lines would use it"
else
  while read -r line; do
    cmd=$(awk '{ print $2 }' <<<"$line")
    read -ra argv <<<"$line"
    argv[0]=$FP
    (cd "$T" && timeout -k 2 20 "${argv[@]}") >"$T/unit.out" 2>"$T/unit.err"
    rc=$?
    # the first file it opens: the key (coordinator), --state (client)
    first=$(sed -n 's/^fedpress [a-z]*: \(--state \)\{0,1\}\(\/[^:]*\):.*/\2/p' "$T/unit.err" | head -1)
    check "the $cmd unit's ExecStart parses: exit 1 on its missing file $first, not a usage error" \
      "[ $rc -eq 1 ] && [ -n '$first' ] && grep -qF -- ' $first' <<<'$line' && ! grep -q 'for usage' '$T/unit.err'"
    [ $rc -eq 1 ] || cat "$T/unit.err"
  done <"$T/exec"
fi

# --- a short coordinator run (N = 3, S = 2, every client answering): the
# store the SQL runs on, and the exit codes the units rely on
cd "$T" || exit 1
"$FP" keygen --out coord.key >coord.pub
for i in 0 1 2; do echo "$i $("$FP" keygen --out c$i.key)" >>clients.pub; mkdir state$i; done
"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set data.clients=3 --set participation.sample=2 \
  --set run.rounds=4 --set participation.deadline=30 --dry-run >run.ini
coord() { timeout -k 2 20 "$FP" coordinator --scenario run.ini --listen 127.0.0.1:0 --key coord.key \
  --allow clients.pub --store runs.db "$@"; }
timeout -k 2 50 "$FP" coordinator --scenario run.ini --listen 127.0.0.1:0 --ready port \
  --key coord.key --allow clients.pub --store runs.db --wait 40 --quiet >coord.out 2>coord.err &
cpid=$!
if port=$(wait_port port $cpid); then
  for i in 0 1 2; do
    timeout -k 2 40 "$FP" client --connect "127.0.0.1:$port" --server-key "$(cat coord.pub)" \
      --key c$i.key --state state$i >client$i.out 2>&1 &
  done
fi
wait $cpid
rc=$?
wait
check "the short coordinator run completes (exit 0)" \
  "[ $rc -eq 0 ] && grep -q '^run 1 .* completed: 4/4 rounds' coord.out"
check "its store is schema 6 with 8 client_rounds rows" \
  "[ \"\$(sqlite3 runs.db 'pragma user_version; select count(*) from client_rounds')\" = \"6
8\" ]"
[ $rc -eq 0 ] || tail -5 coord.err
check "the completed run keeps its model checkpoint and no 'state' one (docs/store.md)" \
  "[ \"\$(sqlite3 runs.db 'select group_concat(kind) from checkpoints where run_id = 1')\" = model ]"
# deployment.md's clients.pub example is a file the coordinator loads: with
# it, a 4-client scenario without a deadline fails on the deadline, after
# the allow-list was read
awk '/^### The allow-list: clients.pub/ { m = 1 } m && /^```/ { if (++f == 2) exit; next } f == 1' \
  "$ROOT/docs/deployment.md" >example.pub
"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set data.clients=4 --set participation.sample=2 \
  --dry-run >four.ini
timeout -k 2 20 "$FP" coordinator --scenario four.ini --listen 127.0.0.1:0 --key coord.key \
  --allow example.pub --store four.db >/dev/null 2>four.err
check "docs/deployment.md's clients.pub example loads (4 ids; then the missing deadline is the error)" \
  "[ \$(grep -c . example.pub) -ge 4 ] && grep -q 'has no round deadline' four.err"
[ -s four.err ] && ! grep -q 'has no round deadline' four.err && cat four.err
skey=$(sed -n 's/.*--server-key \([0-9a-f]\{64\}\).*/\1/p' "$T/exec")
check "the client unit's --server-key is a key, not one of the clients' in the clients.pub example" \
  "[ -n '$skey' ] && ! grep -q '$skey' example.pub"
coord --resume-or-start >ros.out 2>ros.err
rc=$?
check "--resume-or-start on the completed run: exit 0, 'already completed: nothing to do'" \
  "[ $rc -eq 0 ] && grep -q 'run 1 in runs.db is already completed: nothing to do' ros.err"
timeout -k 2 20 "$FP" coordinator --scenario run.ini --listen localhost:0 --key coord.key \
  --allow clients.pub --store host.db >/dev/null 2>host.err
rc=$?
check "--listen takes an IP address: a host name is refused (docs/daemons.md, --help)" \
  "[ $rc -ne 0 ] && grep -q 'not an IP address' host.err"
coord --no-such-option >/dev/null 2>&1
check "a bad option: exit 2 (RestartPreventExitStatus=2)" "[ $? -eq 2 ]"
printf '[run]\nbogus = 1\n' >bad.ini
timeout -k 2 20 "$FP" coordinator --scenario bad.ini --listen 127.0.0.1:0 --key coord.key --allow clients.pub \
  --store bad.db >/dev/null 2>&1
check "a bad scenario: exit 2 (RestartPreventExitStatus=2)" "[ $? -eq 2 ]"

# --- SQL: every sqlite3 block of docs/deployment.md and docs/store.md
# A block runs as written in a directory of its own with a copy of the
# store as runs.db; every sqlite3 it calls must exit 0 and print nothing on
# stderr (what else the block runs, e.g. sha256sum on a run that read no
# file, is not the SQL's business).
sqlite3() { command sqlite3 "$@" 2>>"$SQLERR" || echo "exit $? from sqlite3 $*" >>"$SQLERR"; }
export -f sqlite3
for doc in docs/deployment.md docs/store.md; do
  rm -rf "$T/blocks"
  mkdir -p "$T/blocks"
  awk -v out="$T/blocks" -v doc="$doc" '
    /^```/ && !m { m = 1; lang = substr($0, 4); n++; first = 1; next }
    /^```/ && m { m = 0; close(f); next }
    m && first { first = 0; take = ($1 == "sqlite3"); if (take) { k++; f = sprintf("%s/%02d.sh", out, k) }
                 if (take && lang != "sh") print doc ": block " n " starts with sqlite3 but is not fenced as sh" > (out "/unmarked") }
    m && take && lang == "sh" { print > f }' "$ROOT/$doc"
  check "$doc: no sqlite3 block outside a sh fence (each one is run here)" "[ ! -s '$T/blocks/unmarked' ]"
  [ -s "$T/blocks/unmarked" ] && cat "$T/blocks/unmarked"
  nb=0 nbad=0
  for b in "$T"/blocks/*.sh; do
    [ -e "$b" ] || continue
    nb=$((nb + 1))
    d="$T/run-$(basename "$doc" .md)-$nb"
    rm -rf "$d"
    mkdir -p "$d"
    command sqlite3 "$T/runs.db" ".backup '$d/runs.db'"
    export SQLERR="$d/sqlerr"
    : >"$SQLERR"
    (cd "$d" && timeout -k 2 20 bash "$b") >"$d/out" 2>"$d/err" </dev/null
    if [ -s "$SQLERR" ]; then
      nbad=$((nbad + 1))
      echo "     $doc, block $nb:"; sed 's/^/       /' "$b"; sed 's/^/     > /' "$SQLERR"
    fi
  done
  case $doc in docs/store.md) min=15 ;; *) min=3 ;; esac
  check "$doc: every sqlite3 block ($nb, at least $min) runs without an SQL error on a coordinator's store" \
    "[ $nb -ge $min ] && [ $nbad -eq 0 ]"
done

# --- docs/protocol.md's example key file
awk '/^```/ && m { exit } m { print } /^```/ && !m { getline; if ($0 ~ /^# fedpress X25519 secret key/) { m = 1; print } }' \
  "$ROOT/docs/protocol.md" >ex.key
chmod 600 ex.key
claimed=$(sed -n 's/^# public \([0-9a-f]\{64\}\)$/\1/p' ex.key)
check "docs/protocol.md's example key file: its '# public' line is what keygen --public derives" \
  "[ -n '$claimed' ] && [ \"\$('$FP' keygen --public ex.key 2>/dev/null)\" = '$claimed' ]"

finish e2e_docs
