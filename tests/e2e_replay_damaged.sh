#!/usr/bin/env bash
# End-to-end test of `fedpress sim --replay` on stores edited by hand: a
# round or client number outside 32 bits (which used to be read modulo 2^32,
# so client 2^32 + 3 was reported as client 3), a negative client, an
# unknown status, a client_rounds table that lost its key and repeats a row.
# Rows the stored scenario cannot have (a client past its clients, more
# rows in a round than it samples, a round past its rounds) likewise.
# Each is refused (exit 1) naming the store and the row, never read as
# another round or client, never a crash; the store's bytes are unchanged.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_replay_damaged_XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/e2e_lib.sh"

"$FP" sim "$ROOT/scenarios/scaffold-quadratic.ini" --set run.rounds=6 --set data.clients=12 \
  --set participation.sample=8 --set participation.deadline=4 --set participation.min_updates=4 \
  --set participation.wait_after_min=1 --set participation.dropout=0.2 --store "$T/base.db" \
  --quiet >/dev/null 2>"$T/base.err"
if [ $? -ne 0 ]; then
  bad "the run to damage completes"
  cat "$T/base.err"
  finish e2e-replay-damaged
fi
"$FP" sim --replay 1 --store "$T/base.db" --quiet >"$T/base.out" 2>&1
check "the undamaged store replays exactly" "[ $? -eq 0 ] && grep -q '^replay of run 1: exact' '$T/base.out'"

# damaged NAME SQL WANT: a copy of the store edited by SQL; the replay must
# exit 1 with a message matching WANT (grep -E) and leave the copy's bytes.
damaged() {
  cp "$T/base.db" "$T/$1.db"
  sqlite3 "$T/$1.db" "$2" || { bad "$1: sqlite3 could not edit the copy"; return; }
  local before
  before=$(sha256sum <"$T/$1.db")
  "$FP" sim --replay 1 --store "$T/$1.db" --quiet >"$T/$1.out" 2>"$T/$1.err"
  local rc=$?
  check "$1: refused (exit 1, not a crash), saying $3" \
    "[ $rc -eq 1 ] && grep -Eq \"$3\" '$T/$1.err'"
  check "$1: the store's bytes are unchanged" "[ \"\$(sha256sum <'$T/$1.db')\" = '$before' ]"
  [ $rc -eq 1 ] && grep -Eq "$3" "$T/$1.err" || { cat "$T/$1.out" "$T/$1.err"; }
}
first="(select min(client) from client_rounds where round = 3)"
damaged client-2^32+3 "update client_rounds set client = 4294967296 + 3 where round = 3 and client = $first" \
  "client_rounds row with round '3' and client '4294967299'.*edited or is damaged"
damaged client-negative "update client_rounds set client = -5 where round = 3 and client = $first" \
  "client_rounds row with round '3' and client '-5'.*edited or is damaged"
damaged client-round-2^32+1 "update client_rounds set round = 4294967297 where round = 3" \
  "client_rounds row with round '4294967297'.*edited or is damaged"
damaged round-2^32+1 "pragma foreign_keys = off; update rounds set round = 4294967297 where round = 6" \
  "rounds row with round '4294967297'.*edited or is damaged"
damaged status-unknown "pragma ignore_check_constraints = on; update client_rounds set status = 'bogus' where round = 2 and client = (select min(client) from client_rounds where round = 2)" \
  "client_rounds row with round '2'.*a status one of included, late, absent, refused"
damaged duplicate-row "pragma foreign_keys = off; create table c2 as select * from client_rounds; drop table client_rounds; create table client_rounds(run_id INTEGER NOT NULL, round INTEGER NOT NULL, client INTEGER NOT NULL, train_loss REAL, uplink_bytes INTEGER NOT NULL, downlink_bytes INTEGER NOT NULL, examples INTEGER NOT NULL, upload_sha256 TEXT, status TEXT NOT NULL DEFAULT 'included', reason TEXT); insert into client_rounds select * from c2; insert into client_rounds select * from c2 where round = 2; drop table c2; create index client_rounds_by_client on client_rounds(run_id, client);" \
  "client rows of round 2 are not one per client in ascending order.*the log is damaged"
# rows the stored scenario cannot have (12 clients, 8 sampled, 6 rounds),
# refused as they are read, so a store padded with millions of them costs
# no memory
damaged client-past-clients "update client_rounds set client = 99999 where round = 3 and client = $first" \
  "round 3 has a row for client 99999, but its scenario has 12 clients and samples 8 a round"
damaged rows-past-sample "insert into client_rounds (run_id, round, client, train_loss, uplink_bytes, downlink_bytes, examples, status, reason) select 1, 2, c.value, null, 0, 0, 0, 'absent', 'padding' from generate_series(0, 11) c where c.value not in (select client from client_rounds where round = 2)" \
  "round 2 has a row for client [0-9]+ past its sample, but its scenario has 12 clients and samples 8 a round"
damaged round-past-rounds "insert into rounds (run_id, round, train_loss, uplink_bytes, downlink_bytes, participants, wall_ms) values (1, 7, 1, 0, 0, 0, 0)" \
  "run 1 has a round 7, but its scenario has 6 rounds"
# a diverging run whose stored inputs name /dev/zero: the likely causes
# hash the files the run read, and /dev/zero was read forever (SIGTERM
# waited for the end of a read that never ended)
cp "$T/base.db" "$T/zero.db"
sqlite3 "$T/zero.db" "update runs set inputs = '$(printf '0%.0s' $(seq 64))  /dev/zero' || char(10); update rounds set train_loss = 123 where round = 2"
timeout -s KILL 20 "$FP" sim --replay 1 --store "$T/zero.db" --quiet >"$T/zero.out" 2>"$T/zero.err"
rc=$?
check "inputs naming /dev/zero: divergent (exit 1) within 20 s, saying it is not a regular file" \
  "[ $rc -eq 1 ] && grep -q '^likely cause: the run read /dev/zero, which is not a regular file now' '$T/zero.out'"
finish e2e-replay-damaged
