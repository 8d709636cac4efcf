#!/usr/bin/env bash
# End-to-end test of `fedpress keygen` (issue 13, section 2): the secret key
# file is created 0600 and never overwritten, the public key printed is
# X25519(secret) (checked with an independent X25519, Python's
# cryptography, when it is installed), --public prints it again, a key file
# readable by others or not a key is refused, usage errors are exit 2.
set -uo pipefail
FP=${FEDPRESS:?FEDPRESS must point at the fedpress binary}
T=$(mktemp -d /tmp/fp_e2e_keygen_XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/e2e_lib.sh"

umask 022 # the key must be 0600 whatever the umask allows
"$FP" keygen --out "$T/k" >"$T/pub" 2>"$T/err"
check "keygen --out exits 0" "[ $? -eq 0 ]"
check "the key file is mode 0600" "[ \"\$(stat -c %a '$T/k')\" = 600 ]"
check "one line of 64 hex digits is printed" "grep -qxE '[0-9a-f]{64}' '$T/pub' && [ \$(wc -l <'$T/pub') -eq 1 ]"
check "the file holds one secret key line and comments" \
  "[ \$(grep -cvE '^#' '$T/k') -eq 1 ] && grep -vE '^#' '$T/k' | grep -qxE '[0-9a-f]{64}'"
check "the secret is not the public key" "! grep -qxF \"\$(cat '$T/pub')\" <(grep -v '^#' '$T/k')"

"$FP" keygen --public "$T/k" >"$T/pub2" 2>"$T/err"
check "keygen --public prints the same public key" "[ $? -eq 0 ] && cmp -s '$T/pub' '$T/pub2'"

PY=/usr/bin/python3
if [ -x "$PY" ] && "$PY" -c 'import cryptography' 2>/dev/null; then
  check "the public key is X25519 of the secret (independent implementation)" \
    "\"$PY\" -c '
import sys
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives import serialization as s
sec = [l for l in open(sys.argv[1]) if not l.startswith(\"#\")][0].strip()
pub = x25519.X25519PrivateKey.from_private_bytes(bytes.fromhex(sec)).public_key()
raw = pub.public_bytes(s.Encoding.Raw, s.PublicFormat.Raw).hex()
sys.exit(raw != open(sys.argv[2]).read().strip())
' '$T/k' '$T/pub'"
else
  echo "skip - the X25519 cross-check needs python3-cryptography"
fi

cp "$T/k" "$T/k.before"
"$FP" keygen --out "$T/k" >"$T/out" 2>"$T/err"
rc=$?
check "an existing key file is never overwritten (exit 1, file unchanged)" \
  "[ $rc -eq 1 ] && cmp -s '$T/k' '$T/k.before' && grep -q 'never overwritten' '$T/err' && [ ! -s '$T/out' ]"

"$FP" keygen --out "$T/k2" >/dev/null 2>&1
check "two keys differ" "! cmp -s '$T/k' '$T/k2'"

chmod 644 "$T/k2"
"$FP" keygen --public "$T/k2" >"$T/out" 2>"$T/err"
rc=$?
check "a key readable by others is refused with advice" "[ $rc -eq 1 ] && grep -q 'chmod 600' '$T/err'"

printf 'not a key\n' >"$T/junk"; chmod 600 "$T/junk"
"$FP" keygen --public "$T/junk" >/dev/null 2>"$T/err"
rc=$?
check "a file that is not a key is refused" "[ $rc -eq 1 ] && grep -q 'not a fedpress key file' '$T/err'"

"$FP" keygen --public "$T/missing" >/dev/null 2>"$T/err"
rc=$?
check "a missing key file is exit 1 naming it" "[ $rc -eq 1 ] && grep -q '$T/missing' '$T/err'"

"$FP" keygen --out "$T/nodir/k" >/dev/null 2>&1
check "an unwritable path is exit 1" "[ $? -eq 1 ] && [ ! -e '$T/nodir/k' ]"

for args in "" "--out" "--out $T/a --public $T/k" "--bogus"; do
  "$FP" keygen $args >/dev/null 2>&1
  check "usage error exit 2: keygen $args" "[ $? -eq 2 ]"
done
check "no stray file from the usage errors" "[ ! -e '$T/a' ]"
"$FP" help >"$T/help"
check "fedpress help lists keygen" "grep -q 'keygen --out FILE' '$T/help'"

finish e2e_keygen
