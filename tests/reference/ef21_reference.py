#!/usr/bin/python3
"""Independent float64 reference for tests/test_ef.c: the lsq workload and
EF21, EF21-W, EControl and EF14 (docs/algorithms.md).

The data are generated again from fedpress's keyed stream, written from the
published definitions (tests/reference/rng_reference.py: SplitMix64 key
schedule, xoshiro256**; Box-Muller as core/rng.c documents it): client i
draws G_i (m x d, row-major) and then b_i, all N(0, 1), from the stream
(seed, 0, i, DATA = 2); A_i = sqrt(L_i / lambda_max(G_i^T G_i / m)) G_i in
float32 with L_i = ratio^(i/(N-1)). The eigenvalues here come from LAPACK
(numpy.linalg.eigvalsh), not fedpress's Jacobi; the optimum from
numpy.linalg.solve, not its Cholesky; the algorithms are the update rules of
the papers in their own notation (h_i = g_i^t of EF21, e_i of EControl),
written from scratch in float64. The C test compares with a relative
tolerance (float32 there).

Run: /usr/bin/python3 tests/reference/ef21_reference.py
It prints the C arrays that tests/test_ef.c embeds (generated, then pasted).
With --constants SEED N D ROWS RATIO K it prints instead L, L_AM, L_QM and
the theory steps of EF21 and EF21-W (top-K of d = D) for that lsq scenario,
as docs/results.md quotes them.
With --bc it prints instead the arrays of EF21-BC ([FSR+21], ef21 with
[compressor] downlink = topk): the server steps x, broadcasts
C_M(x - w) and every party sets w += C_M(x - w); gradients are taken at w.
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rng_reference import nxt, seed  # noqa: E402

SEED, N, D, M, RATIO = 7, 3, 4, 6, 100.0
ROUNDS, GAMMA, K = 8, 0.05, 1  # top-1 of d = 4: alpha = 1/4
CONSTANTS = len(sys.argv) == 8 and sys.argv[1] == "--constants"
BC = sys.argv[1:] == ["--bc"]
KD = 2  # EF21-BC's downlink: top-2 of d = 4
if CONSTANTS:
    SEED, N, D, M = (int(v) for v in sys.argv[2:6])
    RATIO, K = float(sys.argv[6]), int(sys.argv[7])
ETA = 0.3


def uniform(s):
    return (nxt(s) >> 11) * 2.0**-53


def normal(s):
    u1 = 1.0 - uniform(s)
    u2 = uniform(s)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)


def law(i):
    return 1.0 if N <= 1 else RATIO ** (i / (N - 1))


A, b = [], []
for i in range(N):
    s = seed(SEED, 0, i, 2)
    G = np.array([normal(s) for _ in range(M * D)]).reshape(M, D)
    bi = np.array([normal(s) for _ in range(M)], dtype=np.float32)
    lam = np.linalg.eigvalsh(G.T @ G / M).max()
    A.append((math.sqrt(law(i) / lam) * G).astype(np.float32).astype(np.float64))
    b.append(bi.astype(np.float64))

H = sum(Ai.T @ Ai / M for Ai in A) / N
r = sum(Ai.T @ bi / M for Ai, bi in zip(A, b)) / N
xstar = np.linalg.solve(H, r)
L_i = [np.linalg.eigvalsh(Ai.T @ Ai / M).max() for Ai in A]
L = np.linalg.eigvalsh(H).max()


def grad(i, x):
    return A[i].T @ (A[i] @ x - b[i]) / M


def gap(x):
    return 0.5 * (x - xstar) @ H @ (x - xstar)


def topk(v, k=K):
    order = sorted(range(len(v)), key=lambda j: (-abs(v[j]), j))[:k]
    out = np.zeros_like(v)
    out[order] = v[order]
    return out


def theory_step(Lt, a=K / D):
    theta = 1 - math.sqrt(1 - a)
    beta = (1 - a) / (1 - math.sqrt(1 - a))
    return 1 / (L + Lt * math.sqrt(beta / theta))


def ef21(weights, gamma=GAMMA, rounds=ROUNDS):
    """[RSF21] Alg. 1, with [RGB24]'s weights w_i (1/N for EF21)."""
    w = np.array(weights)
    x = np.zeros(D)
    h = [grad(i, x) / (N * w[i]) for i in range(N)]  # round 1: dense
    g = sum(w[i] * h[i] for i in range(N))
    x = x - gamma * g
    for _ in range(rounds - 1):
        c = [topk(grad(i, x) / (N * w[i]) - h[i]) for i in range(N)]
        h = [h[i] + c[i] for i in range(N)]
        g = g + sum(w[i] * c[i] for i in range(N))
        x = x - gamma * g
    return x


def ef21_bc(gamma=GAMMA, rounds=ROUNDS, kd=KD):
    """EF21-BC [FSR+21] in its own notation: x^{t+1} = x^t - gamma g^t;
    w^{t+1} = w^t + C_M(x^{t+1} - w^t) (broadcast C_M(x^{t+1} - w^t));
    c_i = C(grad f_i(w^{t+1}) - g_i^t), g_i += c_i, g += mean c_i.
    w^0 = x^0 = 0 and g_i^0 = grad f_i(x^0) (fedpress's dense round 1)."""
    x = np.zeros(D)
    w = x.copy()
    gi = [grad(i, w) for i in range(N)]
    g = sum(gi) / N
    x = x - gamma * g
    for _ in range(rounds - 1):
        w = w + topk(x - w, kd)
        c = [topk(grad(i, w) - gi[i]) for i in range(N)]
        gi = [gi[i] + c[i] for i in range(N)]
        g = g + sum(c) / N
        x = x - gamma * g
    return x, w


def econtrol(eta, gamma=GAMMA, rounds=ROUNDS):
    """[GIS24] as ALGORITHMS.md pins it: x+ = x - gamma mean h_i;
    Delta_i = C(eta e_i + g_i - h_i); e_i += g_i - h_i - Delta_i; h_i += Delta_i."""
    x = np.zeros(D)
    h = [grad(i, x) for i in range(N)]
    e = [np.zeros(D) for _ in range(N)]
    for _ in range(rounds - 1):
        x = x - gamma * sum(h) / N
        for i in range(N):
            gi = grad(i, x)
            delta = topk(eta * e[i] + gi - h[i])
            e[i] = e[i] + gi - h[i] - delta
            h[i] = h[i] + delta
    return x - gamma * sum(h) / N


def ef14(gamma=GAMMA, rounds=ROUNDS):
    """Error feedback [SCJ18], distributed: delta_i = C(e_i + gamma g_i)."""
    x = np.zeros(D)
    e = [np.zeros(D) for _ in range(N)]
    for _ in range(rounds):
        deltas = []
        for i in range(N):
            p = e[i] + gamma * grad(i, x)
            deltas.append(topk(p))
            e[i] = p - deltas[-1]
        x = x - sum(deltas) / N
    return x


def carr(name, v):
    print(f"static const double {name}[] = {{" + ", ".join(f"{t:.17g}" for t in v) + "};")


wl = [law(i) / sum(law(j) for j in range(N)) for i in range(N)]
L_qm = math.sqrt(sum(law(i) ** 2 for i in range(N)) / N)
L_am = sum(law(i) for i in range(N)) / N
if CONSTANTS:
    print(f"L = {L:.6g}, L_AM = {L_am:.6g}, L_QM = {L_qm:.6g}, max L_i = {max(L_i):.6g}")
    print(f"theory step: EF21 {theory_step(L_qm):.6g}, EF21-W {theory_step(L_am):.6g}")
    print(f"gap at x = 0: {gap(np.zeros(D)):.6g}")
    sys.exit(0)
if BC:
    print(f"/* --bc: seed {SEED}, N {N}, d {D}, rows {M}, ratio {RATIO}; {ROUNDS} rounds, "
          f"gamma {GAMMA}, top-{K} up, top-{KD} down */")
    xb, wb = ef21_bc()
    carr("ref_bc_x", xb)
    carr("ref_bc_w", wb)
    xb, wb = ef21_bc(gamma=theory_step(L_qm), rounds=30)
    carr("ref_bc_theory", xb)
    sys.exit(0)
print(f"/* seed {SEED}, N {N}, d {D}, rows {M}, ratio {RATIO}; {ROUNDS} rounds, gamma "
      f"{GAMMA}, top-{K}, eta {ETA} */")
carr("ref_L_i", L_i)
carr("ref_L_f", [L])
carr("ref_step", [theory_step(L_qm), theory_step(L_am)])  # ef21, ef21-w
carr("ref_xstar", xstar)
carr("ref_ef21", ef21([1 / N] * N))
carr("ref_ef21w", ef21(wl))
carr("ref_econtrol", econtrol(ETA))
carr("ref_ef14", ef14())
carr("ref_gap0", [gap(np.zeros(D))])
# each at its own theory step: EF21-W's larger step is the whole difference
carr("ref_ef21_theory", ef21([1 / N] * N, gamma=theory_step(L_qm), rounds=30))
carr("ref_ef21w_theory", ef21(wl, gamma=theory_step(L_am), rounds=30))
