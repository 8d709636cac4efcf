# tests/e2e_lib.sh — sourced by the end-to-end scripts: one way to report a
# check, and one last line. A script that checked nothing exits 77, which
# meson counts as skipped: it never passes with nothing compared.
fails=0 checks=0 skips=0
ok()    { echo "ok   - $1"; checks=$((checks + 1)); }
bad()   { echo "FAIL - $1"; fails=$((fails + 1)); checks=$((checks + 1)); }
skip()  { echo "skip - $1"; skips=$((skips + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
# finish NAME: the tally, then the exit status.
finish() {
  echo "$1: $checks checks, $fails failure(s), $skips skipped"
  [ "$checks" -eq 0 ] && exit 77
  [ "$fails" -eq 0 ] && exit 0
  exit 1
}

# ro_mount DIR: DIR bind-mounted read-only onto itself (root only); 0 if it
# worked and DIR really refuses writes. umount_all undoes every one (call it
# from the script's EXIT trap).
mounted=()
ro_mount() {
  mount --bind "$1" "$1" 2>/dev/null || return 1
  mounted+=("$1")
  mount -o remount,ro,bind "$1" 2>/dev/null && ! touch "$1/.w" 2>/dev/null
}
umount_all() {
  for m in "${mounted[@]}"; do umount "$m" 2>/dev/null; done
}

# wait_port FILE PID [SECONDS]: the port a daemon wrote to its --ready FILE,
# at most SECONDS (default 20); fails at once if PID exits first.
wait_port() {
  for _ in $(seq $((${3:-20} * 20))); do
    [ -s "$1" ] && { cat "$1"; return 0; }
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
# wait_log FILE PATTERN [N]: until FILE has N (default 1) lines matching
# PATTERN, at most 30 s
wait_log() {
  for _ in $(seq 600); do
    [ "$(grep -c -- "$2" "$1" 2>/dev/null)" -ge "${3:-1}" ] && return 0
    sleep 0.05
  done
  return 1
}
# wait_for SQL: until the script's own `q SQL` prints 1, at most 20 s
wait_for() {
  for _ in $(seq 400); do [ "$(q "$1")" = 1 ] && return 0; sleep 0.05; done
  return 1
}
# replay_exact LABEL RUN DB: `fedpress sim --replay RUN --store DB` must exit 0
# and say 'exact' (every included upload's SHA-256, every round's metrics and
# the final model). A final model hash alone can miss a wrong client state
# (the quadratic scenarios converge to the same float32 minimiser from a
# perturbed one); the replay cannot. Needs $FP. Prints the replay on failure.
replay_exact() {
  local out rc
  out=$("$FP" sim --replay "$2" --store "$3" --quiet 2>&1)
  rc=$?
  if [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -q "^replay of run $2: exact"; then
    ok "$1: sim --replay of run $2 is exact (every upload, round and the model)"
  else
    bad "$1: sim --replay of run $2 is exact (exit $rc)"
    printf '%s\n' "$out" | tail -5
  fi
}
