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
