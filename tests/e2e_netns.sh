#!/usr/bin/env bash
# End-to-end across a real link: the coordinator in one network namespace,
# the clients in another, joined by a veth pair (ip netns, as root; issue
# 14, "Tests"). No loopback between them: the coordinator listens on its
# veth address only, the clients connect to it from the other namespace.
# The run must end with `fedpress sim`'s model, and a client in the
# coordinator's namespace cannot reach it through 127.0.0.1 (it listens on
# the veth address only). Skips (77, with the reason) where namespaces
# cannot be made: not root, no `ip`, or a kernel or container that refuses.
# The namespaces (and with them the veth pair) are deleted on every exit
# path by the trap.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/daemon_lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: network namespaces need root"; exit 77; }
command -v ip >/dev/null || { echo "SKIP: no 'ip' command (iproute2)"; exit 77; }
T=$(mktemp -d /tmp/fp_e2e_netns_XXXXXX)
# names unique to this run: tests may run concurrently
NA=fpA$$ NB=fpB$$ VA=fpa$$ VB=fpb$$
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  ip netns del "$NA" 2>/dev/null # deletes the veth pair with it
  ip netns del "$NB" 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! { ip netns add "$NA" && ip netns add "$NB"; } 2>"$T/netns.err"; then
  echo "SKIP: cannot make network namespaces: $(head -1 "$T/netns.err")"
  exit 77
fi
if ! { ip link add "$VA" netns "$NA" type veth peer name "$VB" netns "$NB" &&
  ip -n "$NA" addr add 10.231.0.1/24 dev "$VA" && ip -n "$NB" addr add 10.231.0.2/24 dev "$VB" &&
  ip -n "$NA" link set "$VA" up && ip -n "$NB" link set "$VB" up &&
  ip -n "$NA" link set lo up && ip -n "$NB" link set lo up; } 2>"$T/veth.err"; then
  echo "SKIP: cannot join the namespaces with a veth pair: $(head -1 "$T/veth.err")"
  exit 77
fi
check "two namespaces joined by a veth pair (10.231.0.1 in $NA, 10.231.0.2 in $NB)" \
  "ip -n '$NA' -4 addr show '$VA' | grep -q 10.231.0.1 && ip -n '$NB' -4 addr show '$VB' | grep -q 10.231.0.2"

N=3
make_keys $N
"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set data.clients=$N --set participation.sample=$N \
  --set run.rounds=4 --set run.eval_every=2 --set participation.deadline=30 --dry-run >"$T/run.ini"

ip netns exec "$NA" "$FP" coordinator --scenario "$T/run.ini" --listen 10.231.0.1:0 \
  --key "$T/coord.key" --allow "$T/clients.pub" --store "$T/daemon.db" --ready "$T/port" --wait 30 \
  >"$T/coord.out" 2>"$T/coord.err" &
CPID=$!
PIDS+=("$CPID")
PORT=
for _ in $(seq 400); do
  [ -s "$T/port" ] && { PORT=$(cat "$T/port"); break; }
  kill -0 "$CPID" 2>/dev/null || break
  sleep 0.05
done
if [ -n "$PORT" ]; then
  mkdir -p "$T/stx"
  ip netns exec "$NA" timeout 20 "$FP" client --connect "127.0.0.1:$PORT" --server-key "$CK" \
    --key "$T/c0.key" --state "$T/stx" --welcome-deadline 5 --reconnect-for 0 >/dev/null 2>"$T/lo.err"
  check "in the coordinator's namespace, 127.0.0.1:$PORT is refused (it listens on 10.231.0.1 only)" \
    "[ $? -eq 1 ] && grep -qi 'refused' '$T/lo.err'"
  CS=()
  for i in $(seq 0 $((N - 1))); do
    mkdir -p "$T/st$i"
    ip netns exec "$NB" timeout 50 "$FP" client --connect "10.231.0.1:$PORT" --server-key "$CK" \
      --key "$T/c$i.key" --state "$T/st$i" >"$T/c$i.out" 2>"$T/c$i.err" &
    CS+=($!)
    PIDS+=($!)
  done
  wait "$CPID"
  crc=$?
  ccrc=0
  for p in "${CS[@]}"; do wait "$p" || ccrc=1; done
  check "the coordinator ($NA) and the $N clients ($NB) complete the run (exit 0)" \
    "[ $crc -eq 0 ] && [ $ccrc -eq 0 ]"
  [ $crc -eq 0 ] || tail -5 "$T/coord.err"
  check "the coordinator saw the clients at 10.231.0.2" \
    "[ \$(grep -c 'admitted' '$T/coord.err') -eq $N ] && ! grep 'admitted' '$T/coord.err' | grep -qv '10.231.0.2:'"
  "$FP" sim "$T/run.ini" --store "$T/sim.db" --quiet >"$T/sim.out" 2>&1
  hs=$(sed -n 's/^model sha256 //p' "$T/sim.out")
  hd=$(sed -n 's/^model sha256 //p' "$T/coord.out")
  check "the model across namespaces is fedpress sim's ($hs)" "[ \${#hs} -eq 64 ] && [ '$hs' = '$hd' ]"
  replay_exact "across namespaces" 1 "$T/daemon.db"
else
  bad "the coordinator listens on 10.231.0.1 in $NA"
  tail -5 "$T/coord.err"
fi
finish e2e_netns
