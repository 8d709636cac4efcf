#!/usr/bin/env bash
# End-to-end attacks on the coordinator's uploads hashed on libuv's thread
# pool (issue 14, "Performance"; review 4): things a client does while its
# upload is still being hashed, each with the pool's hashes made 1.5 s
# slower (the test-only --test-slow-hash) so that the window is wide, and
# clients 1 and 2 training 1 s longer (--test-slow-train) so that client
# 0's upload is not the exchange's last one (that one is hashed on the
# loop) and is on the pool when the client acts:
#  - window: client 0 is killed right after its round-1 upload is written
#    (--test-die-after-upload) and started again at once, while that upload
#    is hashed: the new session holds the slot, the upload is included
#    once, the restarted client commits its prepared state, and the final
#    model equals `fedpress sim`'s (SCAFFOLD: a client state kept or
#    dropped wrongly diverges); replay exact;
#  - refused: client 0's round-1 upload is NaNs and hashed on the pool
#    while client 1's is too: the core refuses it when its turn comes, the
#    later slots are still added in order (0 refused with its reason, 1
#    and 2 included); replay exact;
#  - dup: client 0 sends its round-1 upload twice: the second is refused
#    while the first is being hashed, the first stays included once;
#    replay exact;
#  - term: SIGTERM in round 1 (its hashes run after it): the coordinator finishes
#    round 1 (it waits for the hashes), stores the run as stopped and
#    exits 130; replay exact;
#  - killed (the store's failed attempts, schema 6): the coordinator is
#    killed (SIGKILL) once round 1's first attempt, below min_updates, is
#    stored and before the round commits: the run is still 'running' with
#    that attempt; --resume-or-start completes it, keeps the attempt (its
#    'late' client named), runs.error stays NULL; replay exact.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_rev4_XXXXXX)
PIDS=()
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
trap end_jobs EXIT
N=3
make_keys $N

scen() { # scen OUT BASE [--set ...]: a 3-client scenario with 80 KB uploads
  local out=$1 base=$2
  shift 2
  "$FP" sim "$ROOT/scenarios/$base" --set data.clients=$N --set participation.sample=$N \
    --set data.dim=20000 --set participation.deadline=20 "$@" --dry-run >"$T/$out"
}
scen scaffold.ini scaffold-quadratic.ini --set run.rounds=3 --set run.eval_every=1
scen fedavg.ini fedavg-quadratic.ini --set run.rounds=2 --set run.eval_every=1 \
  --set participation.min_updates=2 --set participation.wait_after_min=60
scen long.ini fedavg-quadratic.ini --set run.rounds=20 --set run.eval_every=1
check "the scenarios build" "[ -s '$T/scaffold.ini' ] && [ -s '$T/fedavg.ini' ] && [ -s '$T/long.ini' ]"

# start NAME INI [CLIENT0-ARGS...]: a coordinator with slow pool hashes,
# client 0 with the given arguments, clients 1 and 2 training 1 s longer
start() {
  local name=$1 ini=$2
  shift 2
  coord_start "$T/$name" "$ini" --wait 40 --test-slow-hash 1.5 || return 1
  client_start "$T/$name" 0 "$@"
  client_start "$T/$name" 1 --test-slow-train 1000
  client_start "$T/$name" 2 --test-slow-train 1000
}
# status NAME ROUND: 'client:status' of each client of the round, by id
status() {
  q "$T/$1/db" "select group_concat(client || ':' || status, ' ') from (select client, status from client_rounds where run_id = 1 and round = $2 order by client)"
}
hash_of() { sed -n 's/^model sha256 //p' "$1"; }

# ---- window: killed after its upload, restarted while it is hashed
if start window "$T/scaffold.ini" --test-die-after-upload 1; then
  wait "${CL[0]}" 2>/dev/null
  drc=$?
  client_start "$T/window" 0
  wait "$CPID"
  crc=$?
  ok12=0
  for i in 0 1 2; do wait "${CL[$i]}" || ok12=1; done
  check "window: client 0 died of SIGKILL after its round-1 upload; restarted, the run completes (exit 0)" \
    "[ $drc -eq 137 ] && [ $crc -eq 0 ] && [ $ok12 -eq 0 ]"
  st=$(status window 1)
  check "window: round 1 includes every client, client 0 once (got: $st)" \
    "[ '$st' = '0:included 1:included 2:included' ]"
  check "window: the restarted client committed the state it prepared for round 1" \
    "grep -q 'the coordinator included round 1: the state prepared for it committed' '$T/window/c0.err'"
  hs=$("$FP" sim "$T/scaffold.ini" --store "$T/window/sim.db" --threads 1 --quiet | sed -n 's/^model sha256 //p')
  check "window: the final model equals fedpress sim's (${hs:0:16})" \
    "[ -n '$hs' ] && [ '$hs' = \"\$(hash_of '$T/window/coord.out')\" ]"
  replay_exact window 1 "$T/window/db"
else
  bad "window: the coordinator listens"
fi

# ---- refused: a NaN upload on the pool, the later slots still added
if start refused "$T/fedavg.ini" --test-bad-upload 1:nan; then
  wait "$CPID"
  crc=$?
  check "refused: the run completes (exit 0)" "[ $crc -eq 0 ]"
  st=$(status refused 1)
  check "refused: round 1: client 0 refused, clients 1 and 2 included (got: $st)" \
    "[ '$st' = '0:refused 1:included 2:included' ]"
  why=$(q "$T/refused/db" "select reason from client_rounds where run_id = 1 and round = 1 and client = 0")
  check "refused: client 0's reason says why (got: $why)" "echo '$why' | grep -qi 'finite\|malformed'"
  check "refused: round 2 includes every client" \
    "[ \"\$(status refused 2)\" = '0:included 1:included 2:included' ]"
  replay_exact refused 1 "$T/refused/db"
else
  bad "refused: the coordinator listens"
fi

# ---- dup: the same upload twice while the first is hashed
if start dup "$T/fedavg.ini" --test-bad-upload 1:dup; then
  wait "$CPID"
  crc=$?
  check "dup: the run completes (exit 0)" "[ $crc -eq 0 ]"
  check "dup: the duplicate is refused, named" \
    "grep -q 'client 0 (key .*a upload message' '$T/dup/coord.err'"
  st=$(status dup 1)
  check "dup: round 1 includes client 0's first upload, once (got: $st)" \
    "[ '$st' = '0:included 1:included 2:included' ]"
  replay_exact dup 1 "$T/dup/db"
else
  bad "dup: the coordinator listens"
fi

# ---- term: SIGTERM in round 1, before its hashes are done
if start term "$T/long.ini"; then
  # Round 1 starts once the 3 are connected; a SIGTERM during it only asks
  # for a stop after it (fp__on_signal), so when exactly it lands in the
  # round does not matter: the round still waits for its hashes to finish
  if wait_log "$T/term/coord.err" '3 of 3 .*connected'; then
    kill -TERM "$CPID"
  else
    bad "term: the 3 clients connect"
  fi
  wait "$CPID"
  crc=$?
  check "term: the coordinator stops after the round in progress (exit 130, got $crc)" "[ $crc -eq 130 ]"
  rs=$(q "$T/term/db" "select status || ':' || rounds_done from runs where id = 1")
  check "term: the run is interrupted with its rounds committed (got: $rs)" \
    "echo '$rs' | grep -Eq '^interrupted:[1-9][0-9]*$'"
  st=$(status term 1)
  check "term: round 1 includes every client (got: $st)" \
    "[ '$st' = '0:included 1:included 2:included' ]"
  replay_exact term 1 "$T/term/db"
else
  bad "term: the coordinator listens"
fi

# ---- killed: SIGKILL between a failed attempt and the round's commit
# (deadline 1 s; client 2 trains 4 s, so attempt 1 closes without it; the
# others train 0.7 s, so attempts 2 and 3 take that long: the kill lands
# between attempt 1's row and the round's end, whatever the load)
"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set data.clients=$N --set participation.sample=$N \
  --set run.rounds=2 --set participation.deadline=1 --dry-run >"$T/kill.ini"
d="$T/killed"
if coord_start "$d" "$T/kill.ini" --wait 40; then
  client_start "$d" 0 --test-slow-train 700
  client_start "$d" 1 --test-slow-train 700
  client_start "$d" 2 --test-slow-train 4000
  for _ in $(seq 400); do
    [ "$(q "$d/db" 'select count(*) from attempts')" = 1 ] && break
    sleep 0.05
  done
  # coord_start's pid is timeout(1)'s: the coordinator is its child
  kill -KILL $(pgrep -P "$CPID") "$CPID" 2>/dev/null
  for i in 0 1 2; do kill -KILL "${CL[$i]}" 2>/dev/null; done
  wait 2>/dev/null
  rs=$(q "$d/db" "select status || ':' || rounds_done || ':' || coalesce(error, '-') from runs where id = 1")
  at=$(q "$d/db" "select round || ':' || attempt || ':' || uploads from attempts")
  check "killed: after the kill the run is running with no round and attempt 1 of round 1 stored (run $rs, attempts $at)" \
    "[ '$rs' = 'running:0:-' ] && [ '$at' = '1:1:2' ]"
  rm -f "$d/port"
  coord_start "$d" "$T/kill.ini" --wait 40 --resume-or-start
  for i in 0 1 2; do client_start "$d" $i; done
  wait "$CPID"
  crc=$?
  rs=$(q "$d/db" "select status || ':' || rounds_done || ':' || coalesce(error, '-') from runs where id = 1")
  check "killed: --resume-or-start completes the run (exit $crc, run $rs)" \
    "[ $crc -eq 0 ] && [ '$rs' = 'completed:2:-' ] && [ \"\$(q '$d/db' 'select count(*) from runs')\" = 1 ]"
  at=$(q "$d/db" "select a.round || ':' || a.attempt || ':' || c.client || ':' || c.status from attempts a join attempt_clients c on c.attempt_id = a.id order by a.id, c.client" | tr '\n' ' ')
  check "killed: the stored attempt is kept, client 2 late in it (got: $at)" \
    "[ '$at' = '1:1:0:answered 1:1:1:answered 1:1:2:late ' ]"
  check "killed: round 1 includes every client" "[ \"\$(status killed 1)\" = '0:included 1:included 2:included' ]"
  replay_exact killed 1 "$d/db"
else
  bad "killed: the coordinator listens"
fi

finish e2e_rev4
