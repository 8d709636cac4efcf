# tests/daemon_lib.sh — sourced (after e2e_lib.sh, whose wait_port and
# wait_log it uses) by daemon end-to-end
# scripts: keys and clients.pub, a coordinator on port 0 with a readiness
# file, clients in the background, bounded waits. Needs FP, T and a PIDS
# array (the pids it starts are added to it); the script's trap ends them
# (end_jobs in e2e_lib.sh).

# make_keys N: $T/coord.key (its public key in CK), $T/c0..c{N-1}.key (their
# public keys in K[0..N-1]) and $T/clients.pub with one 'ID PUBKEY' line each
declare -a K
make_keys() {
  CK=$("$FP" keygen --out "$T/coord.key" 2>/dev/null)
  : >"$T/clients.pub"
  for i in $(seq 0 $(($1 - 1))); do
    K[$i]=$("$FP" keygen --out "$T/c$i.key")
    echo "$i ${K[$i]}" >>"$T/clients.pub"
  done
}
# coord_start DIR INI [ARGS]: a coordinator on $LISTEN (default
# 127.0.0.1:0) with its store DIR/db and output in DIR/coord.{out,err};
# CPID its pid (timeout's, which passes INT and TERM on), PORT its port
# (return 1 if it never listened within 20 s)
coord_start() {
  local d=$1 ini=$2
  shift 2
  mkdir -p "$d"
  rm -f "$d/port"
  timeout 55 "$FP" coordinator --scenario "$ini" --listen "${LISTEN:-127.0.0.1:0}" --key "$T/coord.key" \
    --allow "$T/clients.pub" --store "$d/db" --ready "$d/port" "$@" \
    >"$d/coord.out" 2>"$d/coord.err" &
  CPID=$!
  PIDS+=("$CPID")
  PORT=$(wait_port "$d/port" "$CPID")
}
# client_start DIR I [ARGS]: client I to $PORT, state in DIR/stI, output
# appended to DIR/cI.{out,err}; its pid in CL[I] (its own, not a wrapper's:
# SIGKILL and SIGSTOP must reach it; the script's trap ends it). Unless
# ARGS say otherwise it reconnects for at most 90 s, not the default 600:
# a coordinator that died (coord_start's timeout on a loaded machine) ends
# a script that waits for its clients within that, not at meson's timeout.
declare -a CL
client_start() {
  local d=$1 i=$2 rf=(--reconnect-for 90)
  shift 2
  mkdir -p "$d/st$i"
  case " $* " in *" --reconnect-for "*) rf=() ;; esac
  "$FP" client --connect "127.0.0.1:$PORT" --server-key "$CK" --key "$T/c$i.key" \
    --state "$d/st$i" "${rf[@]}" "$@" >>"$d/c$i.out" 2>>"$d/c$i.err" &
  CL[$i]=$!
  PIDS+=($!)
}
# q DB SQL: one query, read-only
q() { sqlite3 -readonly "$1" "$2" 2>/dev/null; }
# fp_sha FILE: the model sha256 a fedpress run printed in FILE
fp_sha() { sed -n 's/^model sha256 //p' "$1"; }
# daemon_run NAME INI [--set ...]: the scenario INI (with the --set
# overrides and [data] clients = N) through a coordinator and N clients in
# $T/NAME (keys from make_keys N), then through the simulator: the same
# model SHA-256, an exact replay of the coordinator's run, the same metrics
# and bytes in every round
daemon_run() {
  local name=$1 ini=$2 d="$T/$1"
  shift 2
  mkdir -p "$d"
  if ! "$FP" sim "$ini" --set data.clients=$N "$@" --dry-run >"$d/s.ini" 2>"$d/dry.err"; then
    bad "$name: the scenario is valid"
    cat "$d/dry.err"
    return
  fi
  timeout 60 "$FP" coordinator --scenario "$d/s.ini" --listen 127.0.0.1:0 --key "$T/coord.key" \
    --allow "$T/clients.pub" --store "$d/coord.db" --ready "$d/port" --deadline 30 --wait 30 \
    >"$d/coord.out" 2>"$d/coord.err" &
  local cpid=$! port i cl=()
  PIDS+=("$cpid")
  if ! port=$(wait_port "$d/port" "$cpid"); then
    bad "$name: coordinator listening"
    tail -5 "$d/coord.err"
    return
  fi
  for i in $(seq 0 $((N - 1))); do
    mkdir -p "$d/st$i"
    timeout 60 "$FP" client --connect "127.0.0.1:$port" --server-key "$CK" \
      --key "$T/c$i.key" --state "$d/st$i" >"$d/c$i.out" 2>"$d/c$i.err" &
    PIDS+=($!)
    cl+=($!)
  done
  wait "$cpid"
  check "$name: the coordinator completes the run (exit 0)" "[ $? -eq 0 ]"
  for i in "${cl[@]}"; do wait "$i" 2>/dev/null; done
  "$FP" sim "$d/s.ini" --store "$d/sim.db" --quiet >"$d/sim.out" 2>&1
  check "$name: the coordinator's model SHA-256 equals fedpress sim's" \
    "[ -n \"\$(fp_sha '$d/sim.out')\" ] && [ \"\$(fp_sha '$d/sim.out')\" = \"\$(fp_sha '$d/coord.out')\" ]"
  "$FP" sim --replay 1 --store "$d/coord.db" --quiet >"$d/rp.out" 2>"$d/rp.err"
  check "$name: sim --replay of the coordinator's run is exact (exit 0)" \
    "[ $? -eq 0 ] && grep -q '^replay of run 1: exact: ' '$d/rp.out'"
  check "$name: every round's metrics and bytes equal the simulator's" \
    "[ \"\$(\"$FP\" metrics 1 --store '$d/sim.db' --format csv | cut -d, -f1-7)\" = \"\$(\"$FP\" metrics 1 --store '$d/coord.db' --format csv | cut -d, -f1-7)\" ]"
  fp_sha "$d/coord.out" | grep -q . || { tail -5 "$d/coord.err"; tail -3 "$d/c0.err"; }
  grep -q 'exact' "$d/rp.out" || cat "$d/rp.out" "$d/rp.err"
}

