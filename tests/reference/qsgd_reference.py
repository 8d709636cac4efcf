#!/usr/bin/python3
"""Independent reference for QSGD's random rounding (algorithms/qsgd.h,
docs/compressors.md "QSGD's random bits"), written from the rule's text with
the generator of rng_reference.py.

It builds a 100-coordinate vector on which the rule's rare branch is taken on
purpose: knowing the lanes' 16-bit draws U, it places coordinates where
T mod 2^16 == U, some with t > T (a 53-bit uniform from the caller's stream
decides) and some with t == T (no draw). The norm is made exactly 2^14 and
s = 4, so q = 2^16 s / norm = 16 and every t = 16 |x| is exact.

Prints the C arrays that tests/test_compressor.c embeds: the input bits, the
whole encoded message, the decoded values, and the caller's stream's next
output after the compression (which shows how many tie draws were taken).

Run: /usr/bin/python3 tests/reference/qsgd_reference.py
"""
import math
import struct

from rng_reference import M, nxt, seed

FP_RNG_COMPRESS, FP_RNG_LANES, NO_CLIENT = 6, 8, M
KEY = (7, 1, 2, FP_RNG_COMPRESS)  # (seed, round, client, purpose) of the caller's stream
N, S, NORM = 100, 4, 16384.0


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def f32bits(v):
    return struct.unpack("<I", struct.pack("<f", v))[0]


def lane_draws(parent, blocks):
    """U[j] for j < 32 * blocks: eight lanes keyed by one word of the parent."""
    w = nxt(parent)
    lanes = [seed(w, i, NO_CLIENT, FP_RNG_LANES) for i in range(8)]
    U = []
    for _ in range(blocks):
        out = [nxt(s) for s in lanes]
        U += [(out[m // 4] >> (16 * (m % 4))) & 0xFFFF for m in range(32)]
    return U


def norm_of(x):
    """float32(sqrt(sum x^2)), the sum in 32 lanes folded in halves."""
    lanes = [0.0] * 32
    for j, v in enumerate(x):
        lanes[j % 32] += v * v
    w = 16
    while w >= 1:
        for i in range(w):
            lanes[i] += lanes[i + w]
        w //= 2
    return f32(math.sqrt(lanes[0]))


parent = seed(*KEY)
U = lane_draws(list(parent), (N + 31) // 32)

# Coordinates with ties on purpose: (index, floor level, sign, kind)
ties = [(3, 0, 1, "frac"), (17, 0, -1, "frac"), (21, 0, 1, "exact"), (40, 1, 1, "frac"),
        (64, 0, -1, "frac"), (77, 0, 1, "exact"), (95, 0, 1, "frac"), (97, 0, -1, "frac")]
x = [0.0] * N
gen = seed(99, 0, 0, 2)  # any stream: small ordinary values
for j in range(1, N):
    u = (nxt(gen) >> 11) * 2.0**-53
    x[j] = f32((u - 0.5) * 64.0)
x[10] = 0.0
x[11] = -0.0
for j, fl, sign, kind in ties:
    T = fl * 65536 + U[j]
    x[j] = f32(sign * (T + (0.5 if kind == "frac" else 0.0)) / 16.0)
    assert abs(x[j]) * 16.0 == T + (0.5 if kind == "frac" else 0.0)
# x[0] makes the norm exactly NORM
rest = sum(v * v for v in x[1:])
x[0] = f32(math.sqrt(NORM * NORM - rest))
while norm_of(x) != NORM:
    x[0] = math.nextafter(x[0], math.inf if norm_of(x) < NORM else -math.inf)
    x[0] = f32(x[0])
assert norm_of(x) == NORM

# The rule
q = math.ldexp(S / NORM, 16)
assert q == 16.0
st = list(parent)
nxt(st)  # the word that keyed the lanes
fields, draws = [], 0
for j in range(N):
    t = abs(x[j]) * q
    T = math.floor(t)
    f = T & 0xFFFF
    l = (T >> 16) + (1 if U[j] < f else 0)
    if U[j] == f and t > T:
        u = (nxt(st) >> 11) * 2.0**-53
        l += 1 if u < t - T else 0
        draws += 1
    l = min(l, S)
    neg = 1 if x[j] < 0 else 0  # -0.0 < 0 is false
    fields.append(neg | l << 1)
assert draws == 6

fb = 1 + S.bit_length()
acc, nbits = 0, 0
for fld in fields:
    acc |= fld << nbits
    nbits += fb
msg = struct.pack("<f", NORM) + acc.to_bytes((nbits + 7) // 8, "little")
xhat = [f32((-1 if fld & 1 else 1) * f32(NORM * (fld >> 1) / S)) for fld in fields]
# a decoded zero keeps its sign bit
xhat_bits = [f32bits(abs(v)) | (fld & 1) << 31 for v, fld in zip(xhat, fields)]


def carr(name, ctype, vals, fmt):
    body = ", ".join(fmt.format(v) for v in vals)
    print(f"static const {ctype} {name}[{len(vals)}] = {{{body}}};")


carr("qref_x", "uint32_t", [f32bits(v) for v in x], "0x{:08x}")
carr("qref_msg", "uint8_t", list(msg), "0x{:02x}")
carr("qref_xhat", "uint32_t", xhat_bits, "0x{:08x}")
print(f"static const uint64_t qref_next = 0x{nxt(st):016x}ULL; /* after {draws} tie draws */")
