#!/usr/bin/python3
"""Independent float64 reference for tests/test_vi.c: the bilinear
saddle-point workload and EG, MASHA1 and MASHA2 (docs/algorithms.md,
"Variational inequalities").

The problem is generated again from fedpress's keyed stream, written from
the published definitions (tests/reference/rng_reference.py; Box-Muller as
core/rng.c documents it): the common draw (B n x n row-major, then a, then
b, all N(0, 1)) from the stream (seed, 0, 2^64 - 1, DATA = 2), device m's
(G_m, u_m, v_m) from (seed, 0, m, DATA); A_m = (B + h G_m)/sqrt(n), a_m =
a + h u_m, b_m = b + h v_m, rounded to float32 as the workload stores them.
z* comes from numpy.linalg.solve (LAPACK), not fedpress's elimination; the
methods are the update rules in their own notation, from scratch in
float64: the operator F_m(x, y) = (A_m y + a_m + lam x, -A_m^T x + b_m +
lam y), MASHA's coin b_k = [U < 1 - tau] with U the first uniform of the
stream (seed, k, 2^64 - 1 - 2^16, COMPRESS = 6); rand-k (MASHA1 both ways)
as docs/compressors.md defines it, its masks from the streams
docs/algorithms.md names. The C test compares with a
relative tolerance (float32 there).

Run: /usr/bin/python3 tests/reference/masha_reference.py [--robust]
(--robust: the robust-lsq workload instead, M 3, n 2, rows 4: z* from the
operator's own Jacobian, which is exact since F is affine, and EG.)
It prints the C arrays that tests/test_vi.c embeds (generated, then pasted).
With --constants SEED M n H LAMBDA [ROWS] it prints instead L (of the mean
operator), L~ = sqrt(mean L_m^2) and the theory steps (c = 1/2) of MASHA1
(rand-k of 10 % both ways), MASHA2 (top-k of 10 % both ways) and EG, to 17
digits (tests/test_vi.c pastes them; docs/results.md). With ROWS, for the
robust-lsq workload. L and L_m are the spectral norms of the Jacobians,
taken column by column from F itself (F is affine), not from the closed
forms of docs/algorithms.md that the C code mirrors.
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rng_reference import nxt, seed  # noqa: E402

SEED, M, n, H, LAM = 7, 3, 3, 0.5, 0.5
ROBUST = len(sys.argv) == 2 and sys.argv[1] == "--robust"
ROWS = 4
if ROBUST:  # robust-lsq: M 3, n 2, rows 4; f_m = |A_m x - b_m - y|^2/(2 r) - lam/2 |y|^2
    n = 2
CONSTANTS = len(sys.argv) in (7, 8) and sys.argv[1] == "--constants"
if CONSTANTS:  # --constants SEED M n H LAM [ROWS]: L, L~ and the theory steps
    SEED, M, n = (int(v) for v in sys.argv[2:5])
    H, LAM = float(sys.argv[5]), float(sys.argv[6])
    ROBUST = len(sys.argv) == 8
    ROWS = int(sys.argv[7]) if ROBUST else ROWS
ROUNDS, GAMMA, TAU, K = 12, 0.2, 0.5, 2  # top-2 of d = 6 for MASHA2
NO_CLIENT = (1 << 64) - 1
R = ROWS if ROBUST else n  # A_m's rows
D = n + R


def uniform(s):
    return (nxt(s) >> 11) * 2.0**-53


def normal(s):
    u1 = 1.0 - uniform(s)
    u2 = uniform(s)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)


def draw(who):
    s = seed(SEED, 0, who, 2)
    G = np.array([normal(s) for _ in range(R * n)]).reshape(R, n)
    u = np.array([normal(s) for _ in range(n)])
    v = np.array([normal(s) for _ in range(R)])
    return G, u, v


B, a0, b0 = draw(NO_CLIENT)
A, a, b = [], [], []
for m in range(M):
    G, u, v = draw(m)
    f32 = lambda t: t.astype(np.float32).astype(np.float64)  # noqa: E731
    A.append(f32((B + H * G) / (1 if ROBUST else math.sqrt(n))))
    a.append(f32(a0 + H * u))
    b.append(f32(b0 + H * v))


def F(m, z):
    x, y = z[:n], z[n:]
    if ROBUST:
        res = A[m] @ x - b[m] - y
        return np.concatenate([A[m].T @ res / R, res / R + LAM * y])
    return np.concatenate([A[m] @ y + a[m] + LAM * x, -A[m].T @ x + b[m] + LAM * y])


def Fbar(z):
    return sum(F(m, z) for m in range(M)) / M


Abar, abar, bbar = sum(A) / M, sum(a) / M, sum(b) / M
if not ROBUST:
    Kmat = np.block([[LAM * np.eye(n), Abar], [-Abar.T, LAM * np.eye(n)]])
    zstar = np.linalg.solve(Kmat, -np.concatenate([abar, bbar]))
if ROBUST:  # F is affine: K = the Jacobian, from F itself at the basis
    F0 = Fbar(np.zeros(D))
    Kr = np.column_stack([Fbar(np.eye(D)[j]) - F0 for j in range(D)])
    zstar = np.linalg.solve(Kr, -F0)
if ROBUST and not CONSTANTS:
    print(f"/* robust-lsq: seed {SEED}, M {M}, n {n}, rows {R}, heterogeneity {H}, lambda {LAM}; "
          f"{ROUNDS} rounds, gamma {GAMMA} */")


if CONSTANTS:
    def jac(Fm):  # F_m is affine: its Jacobian column by column
        F0 = Fm(np.zeros(D))
        return np.column_stack([Fm(np.eye(D)[j]) - F0 for j in range(D)])
    L = np.linalg.norm(jac(Fbar), 2)
    Lt = math.sqrt(sum(np.linalg.norm(jac(lambda z, m=m: F(m, z)), 2) ** 2
                       for m in range(M)) / M)
    k = max(1, int(0.1 * D))
    omega = D / k - 1  # rand-k; top-k: delta = d/k, omega = delta - 1, the same
    Lhat = math.sqrt((1 + omega) * (L**2 + omega * Lt**2 / M))
    p1 = (4 * k) / (4 * D)  # rand-k: 4k bytes of 4d
    p2 = (8 * k if D >= 32 * k else -(-D // 8) + 4 * k) / (4 * D)  # top-k's bytes
    p2 = min(p2, 1.0)
    print(f"L = {L:.17g}")
    print(f"L~ = {Lt:.17g}")
    print(f"|z*|^2 = {zstar @ zstar:.6g}")
    print(f"MASHA1 theory step (c = 1/2, rand-k 10 %, p = {p1:.6g}): {0.5 * math.sqrt(p1) / Lhat:.17g}")
    print(f"MASHA2 theory step (c = 1/2, top-k 10 %, p = {p2:.6g}): {0.5 * math.sqrt(p2) / Lhat:.17g}")
    print(f"EG: 1/(2L) = {0.5 / L:.17g}")
    sys.exit(0)


def coin(k, tau):
    s = seed(SEED, k, NO_CLIENT - 0x10000, 6)
    return uniform(s) < 1 - tau


def topk(v, key=None, k=K):
    order = sorted(range(len(v)), key=lambda j: (-abs(v[j]), j))[:k]
    out = np.zeros_like(v)
    out[order] = v[order]
    return out


def ident(v, key=None):
    return v


def below(st, bound):
    """Lemire's nearly-divisionless draw in [0, bound) (core/rng.c)."""
    m = nxt(st) * bound
    if m % 2**64 < bound:
        t = (2**64 - bound) % bound
        while m % 2**64 < t:
            m = nxt(st) * bound
    return m >> 64


def randk(v, key, k=K):
    """rand-k as docs/compressors.md defines it: Floyd's sampling of k of the
    d indices from the stream `key`, the kept values scaled by d/k."""
    st = seed(*key)
    kept = set()
    for j in range(len(v) - k, len(v)):
        t = below(st, j + 1)
        kept.add(j if t in kept else t)
    out = np.zeros_like(v)
    for j in kept:
        out[j] = v[j] * (len(v) / k)
    return out


def phases(k):
    """(EXTRA, UPDATE) phase numbers of round k: round 1 opens with INIT."""
    return (1, 2) if k == 1 else (0, 1)


# docs/algorithms.md, "the coin": the streams of MASHA's rand-k masks
def up_key(k, m):
    return (SEED, k, m | phases(k)[0] << 32, 6)


def down_key(k):
    return (SEED, k, NO_CLIENT - (phases(k)[1] << 8), 6)


def eg(rounds=ROUNDS, gamma=GAMMA):
    z = np.zeros(D)
    for _ in range(rounds):
        zh = z - gamma * Fbar(z)
        z = z - gamma * Fbar(zh)
    return z


def masha(tau, up, down, feedback, rounds=ROUNDS, gamma=GAMMA):
    """MASHA1 (feedback False) / MASHA2 (True), as ALGORITHMS.md pins them."""
    z = np.zeros(D)
    w = z.copy()
    Fmw = [F(m, w) for m in range(M)]
    Fw = sum(Fmw) / M
    e = [np.zeros(D) for _ in range(M)]
    es = np.zeros(D)
    for k in range(1, rounds + 1):
        zbar = tau * z + (1 - tau) * w
        zh = zbar - gamma * Fw
        qs = []
        for m in range(M):
            v = F(m, zh) - Fmw[m] + (e[m] if feedback else 0)
            q = up(v, up_key(k, m))
            if feedback:
                e[m] = v - q
            qs.append(q)
        s = sum(qs) / M + (es if feedback else 0)
        g = down(s, down_key(k))
        if feedback:
            es = s - g
        z = zbar - gamma * (Fw + g)
        if coin(k, tau):
            w = z.copy()
            Fmw = [F(m, w) for m in range(M)]
            Fw = sum(Fmw) / M
    return z


def carr(name, v):
    print(f"static const double {name}[] = {{" + ", ".join(f"{t:.17g}" for t in v) + "};")


if ROBUST:
    carr("ref_robust_zstar", zstar)
    carr("ref_robust_eg", eg())
    sys.exit(0)


print(f"/* seed {SEED}, M {M}, n {n}, heterogeneity {H}, lambda {LAM}; {ROUNDS} rounds, "
      f"gamma {GAMMA}, tau {TAU}, top-{K} */")
carr("ref_zstar", zstar)
carr("ref_eg", eg())
carr("ref_masha1", masha(TAU, ident, ident, False))
carr("ref_masha2", masha(TAU, topk, topk, True))
carr("ref_masha1_randk", masha(TAU, randk, randk, False))
carr("ref_coins", [1.0 if coin(k, TAU) else 0.0 for k in range(1, ROUNDS + 1)])
