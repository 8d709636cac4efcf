# tests/daemon_lib.sh — sourced (after e2e_lib.sh, whose wait_port and
# wait_log it uses) by daemon end-to-end
# scripts: keys and clients.pub, a coordinator on port 0 with a readiness
# file, clients in the background, bounded waits. Needs FP, T and a PIDS
# array (killed by the script's trap).

# make_keys N: $T/coord.key (its public key in CK), $T/c0..c{N-1}.key and
# $T/clients.pub with one 'ID PUBKEY' line each
make_keys() {
  CK=$("$FP" keygen --out "$T/coord.key" 2>/dev/null)
  : >"$T/clients.pub"
  for i in $(seq 0 $(($1 - 1))); do
    echo "$i $("$FP" keygen --out "$T/c$i.key")" >>"$T/clients.pub"
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
# SIGKILL and SIGSTOP must reach it; the script's trap ends it)
declare -a CL
client_start() {
  local d=$1 i=$2
  shift 2
  mkdir -p "$d/st$i"
  "$FP" client --connect "127.0.0.1:$PORT" --server-key "$CK" --key "$T/c$i.key" \
    --state "$d/st$i" "$@" >>"$d/c$i.out" 2>>"$d/c$i.err" &
  CL[$i]=$!
  PIDS+=($!)
}
# q DB SQL: one query, read-only
q() { sqlite3 -readonly "$1" "$2" 2>/dev/null; }
