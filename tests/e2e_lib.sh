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
