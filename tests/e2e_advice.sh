#!/usr/bin/env bash
# End-to-end test of the advice in the errors of issue 15's methods: a
# diverged run names the key that sets the method's step (the EF family and
# the VI methods have no lr_local / lr_global), and a downlink compressor
# ef21 refuses is refused with advice that fits a downlink.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
SRC=${FP_SOURCE_ROOT:-$(dirname "$0")/..}
T=$(mktemp -d /tmp/fp_e2e_advice_XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/e2e_lib.sh"

# diverge LABEL SCENARIO KEY-REGEX SETS...: the run fails saying training
# diverged, and advises exactly KEY
diverge() {
  local label=$1 sc=$2 key=$3
  shift 3
  "$FP" sim "$SRC/$sc" "$@" --set run.rounds=60 --store "$T/$label.db" --quiet >"$T/$label.out" 2>&1
  local rc=$?
  check "$label: the run fails (exit 1) saying it diverged, advising a smaller $key" \
    "[ $rc -eq 1 ] && grep -q 'diverged (try a smaller \\[algorithm\\] $key)' '$T/$label.out'"
  grep -q 'diverged' "$T/$label.out" || tail -2 "$T/$label.out"
}
diverge ef21-step scenarios/ef21/ef21-lsq.ini step --set algorithm.step=10
diverge ef21-theory scenarios/ef21/ef21-lsq.ini step_scale --set algorithm.step_scale=1e5
diverge econtrol-step scenarios/ef21/econtrol-lsq.ini step --set algorithm.step=10
diverge eg-step scenarios/vi/eg.ini step --set algorithm.step=100
diverge masha2-step scenarios/vi/masha2.ini step --set algorithm.step=100
diverge fedavg-lr scenarios/fedavg-quadratic.ini 'lr_local or lr_global' --set algorithm.lr_local=1000

out=$("$FP" sim "$SRC/scenarios/ef21/ef21-lsq.ini" --set compressor.downlink=randk --store "$T/dl.db" 2>&1)
rc=$?
check "ef21 refuses downlink randk, advising a contractive downlink, not another algorithm" \
  "[ $rc -ne 0 ] && printf '%s' \"\$out\" | grep -q 'contractive \\[compressor\\] downlink.*set downlink = topk or sign' && ! printf '%s' \"\$out\" | grep -q 'use fedpaq'"
[ $rc -ne 0 ] && printf '%s\n' "$out" | head -2
finish e2e-advice
