#!/usr/bin/env bash
# End-to-end test of the daemons' start, stop and give-up (docs/daemons.md,
# docs/deployment.md's units): real processes on 127.0.0.1, ports from
# --ready files, waits that poll for a file or a log line, never a sleep.
#  - refuse: what a restart cannot mend is refused before a run is stored,
#    exit 2 (systemd's RestartPreventExitStatus=2): --listen with a host
#    name, an allow-list whose N is not the scenario's, a scenario without a
#    round deadline, an allow-list that does not parse;
#  - stop: SIGTERM / SIGINT while the coordinator waits for its clients
#    before the first round (a new run, with one client connected; a
#    resumed run after a kill -9, with none): exit 130, the run
#    'interrupted' (its state checkpoint kept), the connected client told;
#    --resume-or-start continues it, and the run ends with fedpress sim's
#    model;
#  - giveup: --reconnect-for S with nothing listening gives up at S (the
#    last wait clipped, said so), not a whole backoff wait later;
#  - dns: a host name that does not resolve (under .invalid) is retried
#    like a refused connection until --reconnect-for, then exit 1.
# giveup and dns run in the background while refuse and stop run.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_lifecycle_XXXXXX)
PIDS=()
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
trap end_jobs EXIT
N=2
make_keys $N
secs() { date +%s.%N; }
# within X LO HI: LO <= X <= HI (seconds, decimals)
within() { awk -v x="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(x >= lo && x <= hi) }'; }

# ---- giveup and dns, in the background: a client's start and end times
# in DIR/t0, DIR/t1, its exit in DIR/rc
giveup_run() { # giveup_run DIR HOST:PORT S
  mkdir -p "$1/st"
  secs >"$1/t0"
  timeout 40 "$FP" client --connect "$2" --server-key "$CK" --key "$T/c0.key" --state "$1/st" \
    --reconnect-for "$3" >"$1/out" 2>"$1/err"
  echo $? >"$1/rc"
  secs >"$1/t1"
}
GS=8
# port 1 (tcpmux): privileged, nothing of a test can listen there
giveup_run "$T/giveup" 127.0.0.1:1 $GS &
GPID=$!
DS=4
DNSNAME=fedpress-lifecycle.invalid
# RFC 6761: .invalid never resolves; a resolver that answers it, or that
# takes seconds to say no (no network, a DNS server unreachable), is no
# place to time a client's retries
d0=$(secs)
timeout 5 getent ahosts "$DNSNAME" >/dev/null 2>&1
grc=$?
dns_took=$(awk -v a="$d0" -v b="$(secs)" 'BEGIN { printf "%.2f", b - a }')
if [ $grc -eq 2 ] && within "$dns_took" 0 1; then
  giveup_run "$T/dns" "$DNSNAME:7400" $DS &
  DPID=$!
else
  DPID=
  dns_why="getent ahosts $DNSNAME: exit $grc after $dns_took s (2 within 1 s expected)"
fi

# ---- refuse: exit 2 before a run is stored
sc() { # sc OUT [--set ...]: a 2-client scenario
  local out=$1
  shift
  "$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set data.clients=$N \
    --set participation.sample=$N "$@" --dry-run >"$T/$out"
}
sc run.ini --set run.rounds=8 --set participation.deadline=10
sc three.ini --set data.clients=3 --set participation.deadline=10
sc nodl.ini
[ -s "$T/run.ini" ] && [ -s "$T/three.ini" ] && [ -s "$T/nodl.ini" ] ||
  { bad "the scenarios are made (fedpress sim --dry-run)"; finish e2e_lifecycle; }
printf '0 %s\n1 nothex\n' "${K[0]}" >"$T/bad.pub"
refuse() { # refuse LABEL PATTERN INI LISTEN ALLOW: exit 2, PATTERN said, no run stored
  local d="$T/refuse-$1" rc runs
  mkdir -p "$d"
  timeout 20 "$FP" coordinator --scenario "$3" --listen "$4" --key "$T/coord.key" --allow "$5" \
    --store "$d/db" --resume-or-start --wait 5 >"$d/out" 2>"$d/err"
  rc=$?
  runs=$([ -e "$d/db" ] && q "$d/db" 'select count(*) from runs' || echo 0)
  check "refuse: $1: exit 2 (RestartPreventExitStatus=2), '$2', no run stored" \
    "[ $rc -eq 2 ] && grep -q -- '$2' '$d/err' && [ '$runs' = 0 ]"
  [ $rc -eq 2 ] && [ "$runs" = 0 ] ||
    { echo "     exit $rc, $runs run(s): $(q "$d/db" 'select id, status, error from runs')"; cat "$d/err"; }
}
refuse "--listen localhost:0 (a host name)" "--listen localhost: not an IP address" \
  "$T/run.ini" localhost:0 "$T/clients.pub"
refuse "an allow-list of 2 for a 3-client scenario" "the allow-list has 2 clients" \
  "$T/three.ini" 127.0.0.1:0 "$T/clients.pub"
refuse "no round deadline" "the scenario has no round deadline" \
  "$T/nodl.ini" 127.0.0.1:0 "$T/clients.pub"
refuse "an allow-list that does not parse" "bad.pub:2" "$T/run.ini" 127.0.0.1:0 "$T/bad.pub"

# ---- stop: a signal before the first round
S="$T/stop"
mkdir -p "$S"
# cstart LOG [ARGS]: a coordinator on the store $S/db, --resume-or-start
# (the unit's command line), output in $S/LOG.{out,err}; CPID (timeout's,
# which passes INT and TERM on: --foreground, to the coordinator only and
# once, as systemd does, not to its process group as well), PORT
cstart() {
  local l=$1
  shift
  rm -f "$S/port"
  timeout --foreground -k 5 50 "$FP" coordinator --scenario "$T/run.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
    --allow "$T/clients.pub" --store "$S/db" --ready "$S/port" --resume-or-start --wait 40 \
    --quiet "$@" >"$S/$l.out" 2>"$S/$l.err" &
  CPID=$!
  PIDS+=("$CPID")
  PORT=$(wait_port "$S/port" "$CPID")
}
status() { q "$S/db" 'select status, rounds_done from runs where id = 1'; }
# 1. a new run, one client of two connected: SIGTERM (systemctl stop)
if cstart new; then
  client_start "$S" 0
  wait_log "$S/new.err" 'admitted (1 of 2 connected)'
  kill -TERM "$CPID"
  wait "$CPID"
  rc=$?
  wait "${CL[0]}"
  crc=$?
  check "stop: SIGTERM while a new run waits for its clients: exit 130 (SuccessExitStatus=130)" \
    "[ $rc -eq 130 ] && grep -q '^run 1 .* interrupted: 0/8 rounds' '$S/new.out'"
  check "stop: ... the run is 'interrupted' after round 0, with no error" \
    "[ \"\$(status)\" = 'interrupted|0' ] && [ -z \"\$(q '$S/db' 'select error from runs')\" ]"
  check "stop: ... the connected client is told the run stopped (exit 0)" \
    "[ $crc -eq 0 ] && grep -q 'stopped by the coordinator' '$S/c0.out'"
  [ $rc -eq 130 ] || { echo "     exit $rc, $(status)"; tail -3 "$S/new.err"; }
else
  bad "stop: the coordinator listens"
fi
# 2. --resume-or-start continues it; the coordinator kills itself (kill -9)
# once round 3 is committed; the clients, which may not reconnect, end
if cstart die --test-die-after-commit 3; then
  for i in 0 1; do client_start "$S" $i --reconnect-for 0; done
  { wait "$CPID"; } 2>/dev/null # its SIGKILL is no news
  for i in 0 1; do wait "${CL[$i]}"; done
  check "stop: --resume-or-start continues the 'interrupted' run 1 (not a failed one) from round 0 (then killed after round 3's commit: 'running' after round 3)" \
    "grep -q \"continuing run 1 of .*db ('interrupted', .*) after round 0\" '$S/die.err' && [ \"\$(status)\" = 'running|3' ]"
else
  bad "stop: the coordinator listens (to be killed)"
fi
# 3. the resumed run waits for its clients, none comes: SIGINT
if cstart resumed; then
  wait_log "$S/resumed.err" 'listening on'
  kill -INT "$CPID"
  wait "$CPID"
  rc=$?
  check "stop: SIGINT while the resumed run waits: exit 130, 'interrupted' after round 3, its state checkpoint of round 3 kept" \
    "[ $rc -eq 130 ] && [ \"\$(status)\" = 'interrupted|3' ] && grep -q '^run 1 .* interrupted: 3/8 rounds' '$S/resumed.out' && [ \"\$(q '$S/db' \"select count(*) from checkpoints where run_id = 1 and kind = 'state' and round = 3\")\" = 1 ]"
  [ $rc -eq 130 ] || { echo "     exit $rc, $(status)"; tail -3 "$S/resumed.err"; }
else
  bad "stop: the coordinator listens (resumed)"
fi
# 4. and --resume-or-start with both clients completes it as fedpress sim
if cstart end; then
  for i in 0 1; do client_start "$S" $i; done
  wait "$CPID"
  rc=$?
  ccrc=0
  for i in 0 1; do wait "${CL[$i]}" || ccrc=1; done
  hs=$("$FP" sim "$T/run.ini" --store "$S/sim.db" --quiet | sed -n 's/^model sha256 //p')
  check "stop: --resume-or-start continues the 'interrupted' run 1 after round 3 and completes it (exit 0, the clients too) with fedpress sim's model (${hs:0:16})" \
    "[ $rc -eq 0 ] && [ $ccrc -eq 0 ] && grep -q \"continuing run 1 of .*db ('interrupted', .*) after round 3\" '$S/end.err' && [ \"\$(status)\" = 'completed|8' ] && [ \"\$(q '$S/db' 'select count(*) from runs')\" = 1 ] && [ -n '$hs' ] && [ '$hs' = \"\$(fp_sha '$S/end.out')\" ]"
  [ $rc -eq 0 ] || { echo "     exit $rc, $(status)"; tail -3 "$S/end.err"; }
else
  bad "stop: the coordinator listens (to end the run)"
fi

# ---- giveup: the background client
wait "$GPID"
G="$T/giveup"
took=$(awk -v a="$(cat "$G/t0")" -v b="$(cat "$G/t1")" 'BEGIN { printf "%.2f", b - a }')
check "giveup: --reconnect-for $GS, nothing listening: refused, retried, then exit 1 with 'gave up reconnecting after $GS s'" \
  "[ \"\$(cat '$G/rc')\" = 1 ] && grep -q 'cannot connect to 127.0.0.1:1: connection refused; connecting again in' '$G/err' && grep -q 'connection refused; gave up reconnecting after $GS s (--reconnect-for)' '$G/err'"
check "giveup: ... the last wait ends at --reconnect-for, and says so" \
  "grep -q 'connecting again in [0-9.]* s (attempt [0-9]*, the last one: --reconnect-for ends then)' '$G/err'"
check "giveup: ... it gave up after $took s: not before $GS s, within $GS + 1.5 s" "within $took $GS $((GS + 1)).5"
grep -q 'gave up' "$G/err" || tail -3 "$G/err"

# ---- dns: the background client pointed at a name that never resolves
if [ -n "$DPID" ]; then
  wait "$DPID"
  D="$T/dns"
  took=$(awk -v a="$(cat "$D/t0")" -v b="$(cat "$D/t1")" 'BEGIN { printf "%.2f", b - a }')
  msg="--connect $DNSNAME:7400: cannot look up the host name: "
  check "dns: a name that does not resolve is retried like a refused connection (3 lookups at least)" \
    "[ \$(grep -c -- '$msg.*; connecting again in' '$D/err') -ge 3 ]"
  check "dns: ... until --reconnect-for $DS: exit 1, 'gave up reconnecting after $DS s'" \
    "[ \"\$(cat '$D/rc')\" = 1 ] && grep -q -- '$msg.*; gave up reconnecting after $DS s (--reconnect-for)' '$D/err'"
  check "dns: ... after $took s: not before $DS s, within $DS + 1.5 s" "within $took $DS $((DS + 1)).5"
  grep -q 'gave up' "$D/err" || tail -3 "$D/err"
else
  skip "dns: a .invalid name does not fail fast here ($dns_why)"
fi

finish e2e_lifecycle
