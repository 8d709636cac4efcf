#!/usr/bin/env bash
# Installs fedpress's build and runtime dependencies from Debian 12's archive
# and builds it into ./build. Safe to run again: apt and meson skip what is done.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential pkg-config meson ninja-build
      libuv1-dev libsodium-dev libsqlite3-dev libcmocka-dev libopenblas-dev
      libinih-dev zlib1g-dev dataset-fashion-mnist sqlite3 python3-numpy
      libplplot-dev plplot-driver-cairo
      # test only: an independent Noise implementation for tests/net_interop.py
      python3-dissononce)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "bootstrap: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

if [ ! -f build/build.ninja ]; then
  meson setup build >&2
fi
meson compile -C build >&2
