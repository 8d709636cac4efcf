#!/usr/bin/env bash
# End-to-end test of the OpenBLAS kernel choice (core/blas.c): `version` and
# the run header name the library and core in use; where OpenBLAS's own
# detection is weaker than the CPU (played by an LD_PRELOAD shim,
# tests/blas_shim.c, under which OpenBLAS loads its "Prescott" kernels when
# OPENBLAS_CORETYPE is unset, as 0.3.21 does on Sapphire Rapids), fedpress
# restarts itself once with OPENBLAS_CORETYPE set and the library then runs
# the better kernels; FEDPRESS_BLAS_AUTO=off keeps OpenBLAS's
# choice; a library that ignores the request gives one warning, not a loop.
# This script never sets OPENBLAS_CORETYPE; a value the environment sets
# is checked to be respected, and the restart checks then skip.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
SHIM=${FP_BLAS_SHIM:-}
T=$(mktemp -d /tmp/fp_e2e_blas_XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/e2e_lib.sh"

# OpenBLAS itself says which core it loaded (OPENBLAS_VERBOSE=2: "Core: X"
# on stderr, once per process that loads it): the oracle for what runs.
cores() { grep -o '^Core: [A-Za-z0-9_]*' "$1" | cut -d' ' -f2 | paste -sd, -; }

# 1. version and the header line, with whatever the environment gives
OPENBLAS_VERBOSE=2 "$FP" version >"$T/v" 2>"$T/ve"; rc=$?
blas=$(sed -n 's/^BLAS: //p' "$T/v")
loaded=$(cores "$T/ve" | awk -F, '{print $NF}')
check "version exits 0 and prints a BLAS line" "[ $rc -eq 0 ] && [ -n \"\$blas\" ]"
check "the BLAS line names OpenBLAS and its version" "echo \"\$blas\" | grep -Eq '^OpenBLAS [0-9]+\.[0-9]+'"
check "the BLAS line's core is the one OpenBLAS loaded ($loaded)" \
  "[ -n '$loaded' ] && echo \"\$blas\" | grep -Eq '^OpenBLAS [^ ]+ $loaded \('"
if [ -n "${OPENBLAS_CORETYPE+set}" ]; then
  check "OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE from the environment is reported as such" \
    "echo \"\$blas\" | grep -qF \"(OPENBLAS_CORETYPE=\$OPENBLAS_CORETYPE from the environment)\""
fi
"$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set run.rounds=1 --set run.name=hdr \
  --store "$T/h.db" >/dev/null 2>"$T/he"; rc=$?
check "the run's header names the same BLAS" "[ $rc -eq 0 ] && grep -qxF \"[hdr] BLAS: \$blas\" '$T/he'"
check "the store records the same BLAS with the run (runs.blas)" \
  "[ \"\$(sqlite3 '$T/h.db' 'select blas from runs where id=1')\" = \"\$blas\" ]"

# 2. the restart, where OpenBLAS's own detection is weaker than the CPU
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
vendor=$(grep -m1 '^vendor_id' /proc/cpuinfo 2>/dev/null | awk '{print $NF}')
has() { echo " $flags " | grep -q " $1 "; }
want=
if has avx512f && has avx512bw && has avx512dq && has avx512vl && has avx2 && has fma; then
  want=SkylakeX
elif has avx2 && has fma; then
  case $vendor in AuthenticAMD | HygonGenuine) want=Zen ;; *) want=Haswell ;; esac
elif has avx; then
  want=Sandybridge
fi
if [ -n "${OPENBLAS_CORETYPE+set}" ]; then
  skip "restart checks: OPENBLAS_CORETYPE is set in the environment, and a set value is never changed"
elif [ -n "${FEDPRESS_BLAS_AUTO+set}" ]; then
  skip "restart checks: FEDPRESS_BLAS_AUTO is set in the environment"
elif [ -z "$SHIM" ] || [ ! -f "$SHIM" ]; then
  skip "restart checks: no FP_BLAS_SHIM (built by meson as tests/libfp_blas_shim.so)"
elif [ -z "$want" ]; then
  skip "restart checks: this CPU has no AVX, so no OpenBLAS core is better than Prescott"
else
  LD_PRELOAD=$SHIM OPENBLAS_VERBOSE=2 "$FP" version >"$T/r" 2>"$T/re"; rc=$?
  check "restart: version exits 0" "[ $rc -eq 0 ]"
  check "restart: reports $want chosen by fedpress over Prescott" \
    "grep -qE '^BLAS: OpenBLAS [^ ]+ $want \(chosen by fedpress; OpenBLAS detected Prescott\)$' '$T/r'"
  check "restart: OpenBLAS loaded Prescott, then (after the restart) $want" \
    "[ \"\$(cores '$T/re')\" = 'Prescott,$want' ]"
  check "restart: no warning" "! grep -q 'fedpress:' '$T/re'"

  # every argument survives the restart: 2 rounds, this store, this name
  LD_PRELOAD=$SHIM "$FP" sim "$ROOT/scenarios/fedavg-quadratic.ini" --set run.rounds=2 \
    --set 'run.name=re start' --store "$T/r.db" >"$T/so" 2>"$T/se"; rc=$?
  check "restart: sim exits 0 with its arguments intact" \
    "[ $rc -eq 0 ] && grep -q \"^run 1 're start' completed: 2/2 rounds\" '$T/so' && [ \"\$(sqlite3 '$T/r.db' 'select count(*) from runs')\" = 1 ]"
  check "restart: the header names $want chosen by fedpress" \
    "grep -qE '^\[re start\] BLAS: OpenBLAS [^ ]+ $want \(chosen by fedpress' '$T/se'"
  check "restart: the store records $want chosen by fedpress" \
    "sqlite3 '$T/r.db' 'select blas from runs where id=1' | grep -qE '^OpenBLAS [^ ]+ $want \(chosen by fedpress; OpenBLAS detected Prescott\)$'"

  LD_PRELOAD=$SHIM FEDPRESS_BLAS_AUTO=off OPENBLAS_VERBOSE=2 "$FP" version >"$T/o" 2>"$T/oe"
  check "FEDPRESS_BLAS_AUTO=off: OpenBLAS's choice kept, no restart" \
    "grep -qE '^BLAS: OpenBLAS [^ ]+ Prescott \(OpenBLAS.s own detection; FEDPRESS_BLAS_AUTO=off\)$' '$T/o' && [ \$(grep -c '^Core: ' '$T/oe') -eq 1 ]"

  LD_PRELOAD=$SHIM FP_SHIM_IGNORE=1 OPENBLAS_VERBOSE=2 timeout 20 "$FP" version >"$T/i" 2>"$T/ie"; rc=$?
  check "a library that ignores the request: one restart, one warning, exit 0" \
    "[ $rc -eq 0 ] && [ \$(grep -c '^Core: ' '$T/ie') -eq 2 ] && [ \$(grep -c \"warning: asked OpenBLAS for its $want kernels\" '$T/ie') -eq 1 ]"
  check "a library that ignores the request: reported as asked-for, not chosen" \
    "grep -qE '^BLAS: OpenBLAS [^ ]+ Prescott \(fedpress asked for $want; OpenBLAS detected Prescott\)$' '$T/i'"
fi

finish e2e_blas
