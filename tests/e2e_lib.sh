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

# end_jobs [SIG]: a daemon script's EXIT trap. Every live job of this shell
# (running or stopped; a pid already waited for may belong to another
# process by now: the e2e tests run in parallel) is continued and sent SIG
# (default TERM, which timeout(1) passes on to the process it runs; KILL
# where a coordinator must not first finish its round), then waited for;
# $T is removed unless KEEP is set.
end_jobs() {
  local p
  for p in $(jobs -pr) $(jobs -ps); do kill -CONT "$p" 2>/dev/null; kill -"${1:-TERM}" "$p" 2>/dev/null; done
  wait 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$T"
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

# resume_after_kill LABEL INI [--set ...]: INI run to the end in $T/res.db
# (run 1, its model in $T/full.f32), then again (run 2) killed with kill -9
# once its progress line reaches round 100, then `sim --resume 2`: a state
# checkpoint of run 2 was stored, and the resumed run ends with run 1's
# model bytes and its metrics and bytes in every round. A run 2 that
# completed before the kill is a skip (nothing to resume). LABEL begins
# every check's name. Needs $FP and $T.
resume_after_kill() {
  local l=$1 ini=$2 pid rc q
  shift 2
  "$FP" sim "$ini" "$@" --store "$T/res.db" --quiet --model-out "$T/full.f32" >/dev/null 2>&1
  "$FP" sim "$ini" "$@" --store "$T/res.db" --threads 1 >/dev/null 2>"$T/kerr" &
  pid=$!
  for _ in $(seq 1000); do grep -q 'round 100/' "$T/kerr" 2>/dev/null && break; sleep 0.01; done
  kill -9 $pid
  wait $pid 2>/dev/null
  if [ "$(sqlite3 "$T/res.db" "select status from runs where id=2")" = running ]; then
    check "$l: kill -9: a state checkpoint of run 2 is stored" \
      "[ \"\$(sqlite3 '$T/res.db' \"select count(*) from checkpoints where run_id=2 and kind='state'\")\" = 1 ]"
    "$FP" sim --resume 2 --store "$T/res.db" --model-out "$T/resumed.f32" >"$T/rout" 2>&1
    rc=$?
    check "$l: --resume: completes with the same model bytes as the run never stopped" \
      "[ $rc -eq 0 ] && [ -s '$T/full.f32' ] && cmp -s '$T/full.f32' '$T/resumed.f32'"
    q='select round, train_loss, test_loss, uplink_bytes, downlink_bytes from rounds where run_id='
    check "$l: --resume: the same metrics and bytes in every round" \
      "[ \"\$(sqlite3 '$T/res.db' '${q}1')\" = \"\$(sqlite3 '$T/res.db' '${q}2')\" ]"
    cmp -s "$T/full.f32" "$T/resumed.f32" ||
      { cat "$T/rout"; sqlite3 "$T/res.db" "select id, status, rounds_done from runs"; }
  elif [ "$(sqlite3 "$T/res.db" "select status from runs where id=2" 2>/dev/null)" = completed ]; then
    skip "$l: kill -9: the run finished before it was killed (machine too fast); nothing to resume"
  else
    bad "$l: kill -9: run 2 was neither running when killed nor completed"
  fi
}
