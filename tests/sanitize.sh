#!/usr/bin/env bash
# Builds fedpress a second time with AddressSanitizer + UndefinedBehaviorSanitizer
# (in build/sanitize, beside the main build) and runs the unit and fuzz-replay
# suites there. One meson test, so `meson test` and CI count it like any other.
set -euo pipefail
src=${FP_SOURCE_ROOT:?}
bld=${FP_BUILD_ROOT:?}/sanitize
if [ ! -f "$bld/build.ninja" ]; then
  meson setup "$bld" "$src" -Db_sanitize=address,undefined -Dbuildtype=debugoptimized >/dev/null
fi
meson compile -C "$bld" >/dev/null
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1
meson test -C "$bld" --suite unit --suite fuzz --print-errorlogs
