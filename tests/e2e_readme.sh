#!/usr/bin/env bash
# End-to-end test of the README's loopback daemon run: the shell block after
# the 'tests/e2e_readme.sh runs the block below' marker in README.md is run
# exactly as written, from the source root, in a scratch directory under this
# test's own (TMPDIR), with only its binary path replaced by the binary under
# test. The coordinator's "model sha256" line must equal the simulator's, and
# the replay of the daemon run must report 'exact' with that same hash. So the
# README cannot rot: a changed flag, output line or step fails here.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
ROOT=${FP_SOURCE_ROOT:?}
T=$(mktemp -d /tmp/fp_e2e_readme_XXXXXX)
cleanup() {
  # the block's processes are its own children; its 'wait' reaps them, and a
  # timeout kills the whole process group below
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/e2e_lib.sh"

# the fenced block right after the marker comment
awk '/tests\/e2e_readme.sh runs the block below/ { m = 1; next }
     m == 1 && /^```/ { m = 2; next }
     m == 2 && /^```/ { exit }
     m == 2 { print }' "$ROOT/README.md" >"$T/block.sh"
check "README.md has the marked loopback block (coordinator, 4 clients, sim, replay)" \
  "grep -q 'fedpress coordinator\\|\$F coordinator' '$T/block.sh' && [ \$(grep -c 'F=\$OLDPWD/build/fedpress' '$T/block.sh') -eq 1 ]"
# the one substitution: the binary under test for the checkout's build/fedpress
sed -i "s#F=\$OLDPWD/build/fedpress#F='$FP'#" "$T/block.sh"
mkdir -p "$T/tmp"
(cd "$ROOT" && TMPDIR="$T/tmp" setsid timeout -k 5 120 bash "$T/block.sh") >"$T/out" 2>"$T/err"
rc=$?
check "the block runs to its end (exit 0)" "[ $rc -eq 0 ]"
mapfile -t hashes < <(sed -n 's/^model sha256 \([0-9a-f]\{64\}\)$/\1/p' "$T/out")
check "the coordinator and the simulator each print a model sha256 (2 lines)" "[ \${#hashes[@]} -eq 2 ]"
check "the coordinator's model sha256 equals the simulator's" \
  "[ -n '${hashes[0]:-}' ] && [ '${hashes[0]:-}' = '${hashes[1]:-x}' ]"
check "the replay of the daemon run is exact, with the same model sha256" \
  "grep -q '^replay of run 1: exact: 20 rounds, 60 included uploads.*${hashes[0]:-none}' '$T/out'"
check "the 4 clients' logs exist and none reports an error or failure" \
  "[ \$(ls '$T'/tmp/*/client*.log 2>/dev/null | wc -l) -eq 4 ] && ! grep -qi 'error\\|fail' '$T'/tmp/*/client*.log"
if [ "$fails" -ne 0 ]; then
  echo "--- block"; cat "$T/block.sh"; echo "--- stdout"; cat "$T/out"; echo "--- stderr"; tail -20 "$T/err"
fi
finish e2e_readme
