#!/usr/bin/python3
"""Independent float64 reference for tests/test_algorithm.c.

Problem: N = 4 clients, d = 3, f_i(x) = 1/2 sum_j a_ij (x_j - b_ij)^2 with
a_ij = 1 + 0.5 i + 0.25 j and b_ij = (i + 1)(j - 1); deterministic gradients.
Rounds use fixed participant sets. FedAvg and SCAFFOLD are written here in
their textbook forms: FedAvg of McMahan et al., and SCAFFOLD of Karimireddy
et al. 2020, Algorithm 1, option II, with TWO uploaded vectors (dy_i, dc_i)
-- not the halved-uplink form fedpress implements -- so agreement checks the
algebra of the rewrite as well as the code.

Run: /usr/bin/python3 tests/reference/algorithms_reference.py
"""
import numpy as np

N, d = 4, 3
a = np.array([[1 + 0.5 * i + 0.25 * j for j in range(d)] for i in range(N)])
b = np.array([[(i + 1) * (j - 1) for j in range(d)] for i in range(N)], dtype=float)
x0 = np.array([0.5, -0.25, 1.0])
rounds = [[0, 2], [1, 3], [0, 1, 3]]
K, lr_l = 3, 0.1


def grad(i, y):
    return a[i] * (y - b[i])


def fedavg(lr_g):
    x = x0.copy()
    for S in rounds:
        deltas = []
        for i in S:
            y = x.copy()
            for _ in range(K):
                y = y - lr_l * grad(i, y)
            deltas.append(x - y)
        x = x - lr_g * np.mean(deltas, axis=0)
    return x


def scaffold_two_vector(lr_g):
    x = x0.copy()
    c = np.zeros(d)
    ci = np.zeros((N, d))
    for S in rounds:
        dys, dcs = [], []
        for i in S:
            y = x.copy()
            for _ in range(K):
                y = y - lr_l * (grad(i, y) - ci[i] + c)
            ci_new = ci[i] - c + (x - y) / (K * lr_l)  # option II
            dys.append(y - x)
            dcs.append(ci_new - ci[i])
            ci[i] = ci_new
        x = x + lr_g * np.mean(dys, axis=0)
        c = c + np.sum(dcs, axis=0) / N
    return x, c, ci


np.set_printoptions(precision=17)
for lr_g in (1.0, 0.5):
    print(f"fedavg lr_g={lr_g}: x =", ", ".join(f"{v:.17g}" for v in fedavg(lr_g)))
    x, c, ci = scaffold_two_vector(lr_g)
    print(f"scaffold lr_g={lr_g}: x =", ", ".join(f"{v:.17g}" for v in x))
    print(f"scaffold lr_g={lr_g}: c =", ", ".join(f"{v:.17g}" for v in c))
    for i in range(N):
        print(f"scaffold lr_g={lr_g}: c_{i} =", ", ".join(f"{v:.17g}" for v in ci[i]))


# ---- compressed algorithms, written in the forms of ALGORITHMS.md ----
def topk(v, k):
    # largest |v_j|, ties to the lower index
    order = sorted(range(len(v)), key=lambda j: (-abs(v[j]), j))[:k]
    out = np.zeros_like(v)
    out[order] = v[order]
    return out


def local(i, x, c=None, ci=None):
    y = x.copy()
    for _ in range(K):
        g = grad(i, y)
        y = y - lr_l * (g if c is None else g - ci + c)
    return y


def fedef(lr_g, k):
    x, e = x0.copy(), np.zeros((N, d))
    for S in rounds:
        msgs = []
        for i in S:
            delta = x - local(i, x)
            m = topk(delta + e[i], k)
            e[i] = delta + e[i] - m
            msgs.append(m)
        x = x - lr_g * np.mean(msgs, axis=0)
    return x, e


def scallion_identity(lr_g, alpha):
    x, c, ci = x0.copy(), np.zeros(d), np.zeros((N, d))
    gamma = lr_g * lr_l * K
    for S in rounds:
        msgs = []
        for i in S:
            u = (x - local(i, x, c, ci[i])) / (lr_l * K)
            delta = u - c
            ci[i] = ci[i] + alpha * delta
            msgs.append(delta)
        x = x - gamma * (c + np.mean(msgs, axis=0))
        c = c + alpha * np.sum(msgs, axis=0) / N
    return x, c, ci


def scafcom(lr_g, beta, k):
    """SCAFCOM in the v_i form of ALGORITHMS.md (fedpress stores w_i = v_i - c_i)."""
    x, c, ci, v = x0.copy(), np.zeros(d), np.zeros((N, d)), np.zeros((N, d))
    gamma = lr_g * lr_l * K
    for S in rounds:
        msgs = []
        for i in S:
            u = (x - local(i, x, c, ci[i])) / (lr_l * K)
            m = u + ci[i] - c
            v[i] = (1 - beta) * v[i] + beta * m
            delta = topk(v[i] - ci[i], k)
            ci[i] = ci[i] + delta
            msgs.append(delta)
        x = x - gamma * (c + np.mean(msgs, axis=0))
        c = c + np.sum(msgs, axis=0) / N
    return x, c, ci


def show(name, v):
    print(name, "=", ", ".join(f"{t:.17g}" for t in v))


x, e = fedef(1.0, 1)
show("fedef topk k=1: x", x)
x, c, ci = scallion_identity(1.0, 0.5)
show("scallion identity alpha=0.5: x", x)
show("scallion identity alpha=0.5: c", c)
x, c, ci = scafcom(1.0, 0.5, 1)
show("scafcom topk k=1 beta=0.5: x", x)
show("scafcom topk k=1 beta=0.5: c", c)
