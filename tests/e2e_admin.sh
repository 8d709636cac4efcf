#!/usr/bin/env bash
# End-to-end test of the coordinator's administration (issue 14): a
# coordinator and up to 4 clients on 127.0.0.1, SCAFFOLD on the quadratic
# (client state c_i), min_updates = 1 so the run goes on whoever leaves.
# SIGHUP re-reads clients.pub:
#  - a key added ('3 -' replaced by client 3's key) can connect from then
#    on; before, it is refused;
#  - a key removed ('1 -') has its session closed (logged, the client told)
#    and is refused afterwards; the rounds after have it 'absent' with why;
#  - a file that does not parse, one that changes N, and one that gives a
#    client that holds state a new key are refused with a clear message, the
#    old list is kept (client 3 stays connected) and the rounds go on;
#  - a revoked key put back on its own id is accepted again.
# The per-address cap on connections in their handshake: a flood from
# 127.0.0.2 keeps 8 and closes no handshake from 127.0.0.1 (section 5).
# `fedpress client --data DIR` (section 6).
# Every process is killed by the trap, whatever happens.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_admin_XXXXXX)
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
trap 'end_jobs KILL' EXIT
N=4
q() { sqlite3 "$T/runs.db" "$1" 2>/dev/null; }

make_keys 6 # clients.pub is then written by pub
for i in 0 1 2 3 4 5; do mkdir -p "$T/st$i"; done
# pub LINE...: clients.pub replaced atomically (as an editor's save does)
pub() {
  printf '%s\n' "# id key" "$@" >"$T/clients.pub.tmp" && mv "$T/clients.pub.tmp" "$T/clients.pub"
}

# client I: starts client I in the background; its pid in cl[I]
client() {
  "$FP" client --connect "127.0.0.1:$port" --server-key "$CK" --key "$T/c$1.key" \
    --state "$T/st$1" >>"$T/c$1.out" 2>>"$T/c$1.err" &
  cl[$1]=$!
}
# hup PATTERN: SIGHUP, then the coordinator's answer (the how-many-th SIGHUP line)
hups=0
hup() {
  hups=$((hups + 1))
  kill -HUP "$cpid"
  wait_log "$T/coord.err" "SIGHUP: " "$hups"
}
rounds() { q "select count(*) from rounds"; }
last_hup() { grep 'SIGHUP: ' "$T/coord.err" | tail -1; }
# going_on: the coordinator is alive and commits 5 more rounds
going_on() {
  local r0
  r0=$(rounds)
  kill -0 "$cpid" 2>/dev/null && wait_for "select count(*) >= $((r0 + 5)) from rounds"
}

"$FP" sim "$ROOT/scenarios/scaffold-quadratic.ini" --set data.clients=$N --set participation.sample=$N \
  --set run.rounds=1000000 --set run.eval_every=100000 --set participation.deadline=10 \
  --set participation.min_updates=1 --dry-run >"$T/run.ini"
pub "0 ${K[0]}" "1 ${K[1]}" "2 ${K[2]}" "3 -"
"$FP" coordinator --scenario "$T/run.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
  --allow "$T/clients.pub" --store "$T/runs.db" --ready "$T/port" --wait 30 \
  >"$T/coord.out" 2>"$T/coord.err" &
cpid=$!
# sections 1-4 need this coordinator; 5 and 6 start their own
sighup_part() {
for i in 0 1 2; do client $i; done
check "'3 -' (no key): the first round starts with the 3 clients that have one" \
  "wait_for 'select count(*) >= 3 from rounds' && [ \"\$(q \"select count(*) from client_rounds where round = 1 and client = 3 and status = 'absent'\")\" = 1 ]"

# 1. a key added by SIGHUP can connect from then on; not before
client 3
wait "${cl[3]}"
rc=$?
check "client 3 before its key is added: refused (exit 1, 'not in the allow-list' logged)" \
  "[ $rc -eq 1 ] && grep -q 'refused key .*: this key is not in the allow-list' '$T/coord.err'"
pub "0 ${K[0]}" "1 ${K[1]}" "2 ${K[2]}" "3 ${K[3]}"
hup
check "SIGHUP with client 3's key added: re-read, 4 of 4 clients have a key" \
  "grep -q 'SIGHUP: .*clients.pub re-read: 4 of the 4 clients have a key; 0 sessions closed' '$T/coord.err'"
client 3
check "client 3 then connects and its uploads are included" \
  "wait_for \"select count(*) >= 2 from client_rounds where client = 3 and status = 'included'\""

# 2. a key removed: its session closed (logged, the client told), refused afterwards
pub "0 ${K[0]}" "1 -" "2 ${K[2]}" "3 ${K[3]}"
hup
wait "${cl[1]}"
rc=$?
check "SIGHUP with client 1's key removed: its session closed, logged" \
  "grep -q 'client 1 (key .*): its key is no longer in .*clients.pub (SIGHUP); session closed' '$T/coord.err' && grep -q '3 of the 4 clients have a key; 1 session closed' '$T/coord.err'"
check "client 1 is told why and exits 1" \
  "[ $rc -eq 1 ] && grep -q 'your key was removed from the coordinator' '$T/c1.err'"
check "the rounds after have client 1 'absent', with the reason" \
  "wait_for \"select count(*) >= 1 from client_rounds where client = 1 and status = 'absent' and reason like '%its key was removed from the allow-list%'\""
n_refused=$(grep -c 'this key is not in the allow-list' "$T/coord.err")
client 1
wait "${cl[1]}"
rc=$?
check "client 1 connecting again: refused (exit 1)" \
  "[ $rc -eq 1 ] && [ \$(grep -c 'this key is not in the allow-list' '$T/coord.err') -eq $((n_refused + 1)) ]"

# 3. refused lists: the old list kept, the run goes on, client 3 stays
bad_list() { # NAME PATTERN LINE...
  local name=$1 pat=$2
  shift 2
  pub "$@"
  hup
  check "SIGHUP with $name: refused, the list in use kept ('$pat')" \
    "last_hup | grep -q \"SIGHUP: .*$pat.*; the allow-list in use is kept\""
}
bad_list "a line that does not parse" "clients.pub:3: expected 'ID PUBKEY'" \
  "0 ${K[0]}" "one -" "2 ${K[2]}" "3 ${K[3]}"
bad_list "a fifth id (N changes)" "lists 5 clients, but this run has N = 4" \
  "0 ${K[0]}" "1 -" "2 ${K[2]}" "3 ${K[3]}" "4 ${K[4]}"
bad_list "client 0 (which holds state) given a new key" \
  "gives client 0 a new key, but client 0 holds algorithm state" \
  "0 ${K[5]}" "1 -" "2 ${K[2]}" "3 ${K[3]}"
bad_list "revoked client 1 (which holds state) given a new key" \
  "gives client 1 a new key, but client 1 holds algorithm state" \
  "0 ${K[0]}" "1 ${K[5]}" "2 ${K[2]}" "3 ${K[3]}"
check "after the refused lists: the coordinator goes on, client 3 still in the rounds" \
  "going_on && r=\$(rounds) && wait_for \"select count(*) >= 1 from client_rounds where client = 3 and status = 'included' and round > \$r\" && ! grep -q 'client 3 .*session closed' '$T/coord.err'"
client 5
wait "${cl[5]}"
rc=$?
check "the refused list's new key for client 0 cannot connect (the old list is in use)" \
  "[ $rc -eq 1 ]"

# 4. a revoked key put back on its own id: accepted, it connects again
pub "0 ${K[0]}" "1 ${K[1]}" "2 ${K[2]}" "3 ${K[3]}"
hup
client 1
check "client 1's own key back: accepted, it connects and is included again" \
  "last_hup | grep -q 're-read: 4 of the 4' && r=\$(rounds) && wait_for \"select count(*) >= 1 from client_rounds where client = 1 and status = 'included' and round > \$r\""

# the end: SIGINT, every client told
kill -INT "$cpid"
wait "$cpid"
crc=$?
ccrc=0
for i in 0 1 2 3; do wait "${cl[$i]}" || ccrc=1; done
check "SIGINT: the run is 'interrupted' (exit 130), its 4 clients exit 0" \
  "[ $crc -eq 130 ] && [ $ccrc -eq 0 ] && [ \"\$(q 'select status from runs')\" = interrupted ]"
}
if port=$(wait_port "$T/port" "$cpid"); then
  sighup_part
else
  bad "coordinator listening (clients.pub with '3 -')"
fi

# 5. The per-address cap on connections in their handshake (default 8, in
# a total of --max-pending 16 here): 60 silent connections from 127.0.0.2
# leave it 8, and do not close one from 127.0.0.1 opened before them, which
# the total cap alone would close (the oldest goes); a steady flood from 127.0.0.2 never closes the handshake of
# an honest client on 127.0.0.1, and the run completes.
PY=/usr/bin/python3
"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set data.clients=3 --set participation.sample=3 \
  --set run.rounds=20 --set participation.deadline=10 --dry-run >"$T/flood.ini"
printf '%s\n' "0 ${K[0]}" "1 ${K[1]}" "2 ${K[2]}" >"$T/flood.pub"
if ! "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.2", 0))' 2>/dev/null; then
  skip "per-address cap: 127.0.0.2 cannot be bound here (python3 or the loopback /8 missing)"
else
  "$FP" coordinator --scenario "$T/flood.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
    --allow "$T/flood.pub" --store "$T/flood.db" --ready "$T/fport" --wait 30 --max-pending 16 \
    >"$T/flood.out" 2>"$T/flood.err" &
  fpid=$!
  if port=$(wait_port "$T/fport" "$fpid"); then
    "$PY" "$ROOT/tests/flood.py" burst 127.0.0.2 "$port" 60 8 >"$T/burst.out" 2>&1
    check "60 silent connections from 127.0.0.2: 8 left open (--max-pending-per-address 8): $(tail -1 "$T/burst.out")" \
      "grep -q '^open 8,' '$T/burst.out' && [ \$(grep -c '127.0.0.2:[0-9]*: too many connections in their handshake from this address' '$T/flood.err') -eq 52 ]"
    check "... and a connection from 127.0.0.1 in its handshake before them is not closed (the total cap, 16, would close it as the oldest)" \
      "grep -q ', 127.0.0.1 open\$' '$T/burst.out' && ! grep -q '127.0.0.1:[0-9]*: too many connections' '$T/flood.err'"
    "$PY" "$ROOT/tests/flood.py" steady 127.0.0.2 "$port" "$T/stop" >"$T/steady.out" 2>&1 &
    spid=$!
    wait_log "$T/flood.err" "127.0.0.2:.*too many connections" 60
    for i in 0 1 2; do client $i; done
    wait "$fpid"
    frc=$?
    [ $frc -eq 0 ] || tail -3 "$T/flood.err"
    touch "$T/stop"
    wait "$spid"
    check "a steady flood from 127.0.0.2 ($(cat "$T/steady.out")): the honest clients on 127.0.0.1 get in, the run completes" \
      "[ $frc -eq 0 ] && [ \$(grep -c 'client [0-2] .*127.0.0.1:[0-9]*) admitted' '$T/flood.err') -eq 3 ]"
    check "... and no connection from 127.0.0.1 was closed for the flood's sake" \
      "! grep -q '127.0.0.1:[0-9]*: too many connections' '$T/flood.err'"
  else
    bad "per-address cap: coordinator listening"
  fi
fi

# 6. `fedpress client --data DIR`: the client's own IDX files. Small
# Fashion-MNIST-format files made here (28x28 random pixels, labels 0-9).
# With N = 1 the client's directory holding the coordinator's training pair
# must give `fedpress sim`'s model, and other files another model; a
# directory that cannot serve is refused before connecting, naming the file
# and the reason; a scenario whose dataset is not an IDX one is refused at
# the welcome. With the same files: a coordinator killed and its test labels
# changed is not continued by --resume-or-start (the run's inputs' SHA-256).
mkidx() { # DIR SEED N [ROWS [MAXLABEL]]: train pair in DIR (and a t10k pair)
  "$PY" - "$@" <<'PYEOF'
import gzip, random, struct, sys, os
d, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = int(sys.argv[4]) if len(sys.argv) > 4 else 28
maxlab = int(sys.argv[5]) if len(sys.argv) > 5 else 9
os.makedirs(d, exist_ok=True)
r = random.Random(seed)
for name, k in (("train", n), ("t10k", 50)):
    px = bytes(r.randrange(256) for _ in range(k * rows * rows))
    lab = bytes(r.randrange(maxlab + 1) for _ in range(k))
    with open(f"{d}/{name}-images-idx3-ubyte.gz", "wb") as f:
        f.write(gzip.compress(struct.pack(">IIII", 0x803, k, rows, rows) + px, mtime=0))
    with open(f"{d}/{name}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(gzip.compress(struct.pack(">II", 0x801, k) + lab, mtime=0))
PYEOF
}
# data_client NAME DIR [PORT]: a client with --data DIR; exit status in rc
data_client() {
  "$FP" client --connect "127.0.0.1:${3:-1}" --server-key "$CK" --key "$T/c0.key" \
    --state "$T/st0" --data "$2" >"$T/$1.out" 2>"$T/$1.err"
  rc=$?
}
if mkidx "$T/cdata" 1 200 && mkdir -p "$T/own" && cp "$T"/cdata/train-* "$T/own/"; then
  mkidx "$T/small" 2 50 20
  mkidx "$T/badlab" 3 50 28 12
  mkidx "$T/short" 4 50 && cp "$T/badlab/train-labels-idx1-ubyte.gz" "$T/short/" &&
    "$PY" -c "import gzip,struct; open('$T/short/train-labels-idx1-ubyte.gz','wb').write(gzip.compress(struct.pack('>II',0x801,40)+bytes(40)))"
  mkdir -p "$T/empty"
  data_client nodir "$T/empty"
  check "--data DIR without the training pair: exit 1 before connecting, naming the files" \
    "[ $rc -eq 1 ] && grep -q 'no train-images-idx3-ubyte.gz or train-images-idx3-ubyte there' '$T/nodir.err' && ! grep -qi 'connect' '$T/nodir.err'"
  data_client small "$T/small"
  check "--data DIR of 20x20 images: exit 1 before connecting (the models take 784 inputs)" \
    "[ $rc -eq 1 ] && grep -q 'holds images of 400 pixels, but .* fashion-mnist, has 28x28 = 784' '$T/small.err'"
  data_client badlab "$T/badlab"
  check "--data DIR with a label 12: exit 1 before connecting, naming the labels file" \
    "[ $rc -eq 1 ] && grep -q 'badlab/train-labels-idx1-ubyte.gz' '$T/badlab.err' && grep -qi 'label' '$T/badlab.err'"
  data_client short "$T/short"
  check "--data DIR with 40 labels for 50 images: exit 1, both files named" \
    "[ $rc -eq 1 ] && grep -q 'has 40 labels for the 50 images of' '$T/short.err'"

  "$FP" sim "$ROOT/scenarios/fedavg-fmnist.ini" --set data.path="$T/cdata" --set data.clients=1 \
    --set participation.sample=1 --set run.rounds=3 --set model.hidden=16 --set data.partition=iid \
    --set participation.deadline=30 --dry-run >"$T/fm.ini"
  "$FP" sim "$T/fm.ini" --store "$T/fmsim.db" --quiet >"$T/fmsim.out" 2>&1
  want=$(sed -n 's/^model sha256 //p' "$T/fmsim.out")
  grep -v '^#' "$T/clients.pub" | head -1 >"$T/one.pub"
  "$FP" coordinator --scenario "$T/fm.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
    --allow "$T/one.pub" --store "$T/fm.db" --ready "$T/fmport" --wait 30 >"$T/fm.out" 2>"$T/fm.err" &
  fmpid=$!
  if port=$(wait_port "$T/fmport" "$fmpid"); then
    data_client own "$T/own" "$port"
    wait "$fmpid"
    crc=$?
    got=$(sed -n 's/^model sha256 //p' "$T/fm.out")
    check "--data DIR (the coordinator's training pair, N = 1): the run completes with sim's model ($want)" \
      "[ $rc -eq 0 ] && [ $crc -eq 0 ] && [ -n '$want' ] && [ '$got' = '$want' ] && grep -q \"model sha256 $want\" '$T/own.out'"
    replay_exact "--data DIR" 1 "$T/fm.db"
  else
    bad "--data DIR: coordinator listening"
  fi
  mkidx "$T/other" 9 200
  "$FP" coordinator --scenario "$T/fm.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
    --allow "$T/one.pub" --store "$T/fm2.db" --ready "$T/fmport2" --wait 30 >"$T/fm2.out" 2>"$T/fm2.err" &
  fmpid=$!
  if port=$(wait_port "$T/fmport2" "$fmpid"); then
    data_client other "$T/other" "$port"
    wait "$fmpid"
    crc=$?
    got2=$(sed -n 's/^model sha256 //p' "$T/fm2.out")
    check "--data DIR of other files: the run completes with another model (the client trains on DIR)" \
      "[ $rc -eq 0 ] && [ $crc -eq 0 ] && [ -n '$got2' ] && [ '$got2' != '$want' ]"
  else
    bad "--data DIR (other files): coordinator listening"
  fi
  # (crash recovery, here for its IDX files) a coordinator killed, then its
  # test labels changed: --resume-or-start refuses, naming the file
  FMC=("$FP" coordinator --scenario "$T/fm.ini" --listen 127.0.0.1:0 --key "$T/coord.key"
    --allow "$T/one.pub" --store "$T/fmres.db" --resume-or-start --wait 30)
  "${FMC[@]}" --ready "$T/fmport3" >/dev/null 2>"$T/fm3.err" &
  fmpid=$!
  if wait_port "$T/fmport3" "$fmpid" >/dev/null; then
    kill -KILL "$fmpid"
    wait "$fmpid" 2>/dev/null
    cp "$T/cdata/t10k-labels-idx1-ubyte.gz" "$T/labels.keep"
    mkidx "$T/cdata2" 7 10 && cp "$T/cdata2/t10k-labels-idx1-ubyte.gz" "$T/cdata/"
    "${FMC[@]}" >/dev/null 2>"$T/fm4.err"
    rc=$?
    check "a test file changed after a kill -9: --resume-or-start refuses (exit 1), naming it" \
      "[ $rc -eq 1 ] && grep -q \"input $T/cdata/t10k-labels-idx1-ubyte.gz changed since the run started\" '$T/fm4.err' && [ \"\$(sqlite3 '$T/fmres.db' 'select count(*) || status from runs')\" = 1running ]"
    cp "$T/labels.keep" "$T/cdata/t10k-labels-idx1-ubyte.gz"
  else
    bad "--data DIR: a coordinator to kill"
  fi
  "$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set data.clients=1 --set participation.sample=1 \
    --set participation.deadline=30 --dry-run >"$T/quad1.ini"
  "$FP" coordinator --scenario "$T/quad1.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
    --allow "$T/one.pub" --store "$T/q1.db" --ready "$T/q1port" --wait 30 >/dev/null 2>"$T/q1.err" &
  q1pid=$!
  if port=$(wait_port "$T/q1port" "$q1pid"); then
    data_client quad "$T/own" "$port"
    check "--data DIR for a quadratic scenario: refused at the welcome (exit 1), saying to use --data partition" \
      "[ $rc -eq 1 ] && grep -q \"a client's own IDX files apply to an IDX dataset (fashion-mnist); this scenario's dataset is quadratic\" '$T/quad.err'"
    kill -INT "$q1pid"
    wait "$q1pid" 2>/dev/null
  else
    bad "--data DIR, quadratic: coordinator listening"
  fi
else
  skip "--data DIR: the IDX files could not be made"
fi

finish e2e_admin
