#!/usr/bin/python3
"""Reference values for tests/test_model.c (test_numpy_reference).

A tiny fixed problem, built from closed formulas that the C test repeats:
  in = 5 features, h = 4 hidden units, C = 3 classes, n = 6 examples,
  x[i][j]  = float32(0.5 + 0.5 sin(1.3 i + 0.7 j))
  y[i]     = (2 i + 1) mod 3
  p[k]     = float32(0.3 cos(0.9 k + 0.2))      (the flat parameter vector)
Layout as in PyTorch: MLP  W1[h][in] | b1[h] | W2[C][h] | b2[C];
                      logreg W[C][in] | b[C].
Prints, in float64, the mean softmax cross-entropy over all six examples,
its gradient w.r.t. every parameter, and the argmax accuracy, for both
models, as C initialisers.

Run: /usr/bin/python3 tests/reference/mlp_reference.py
"""
import numpy as np

IN, H, C, N = 5, 4, 3, 6


def inputs():
    i = np.arange(N)[:, None]
    j = np.arange(IN)[None, :]
    x = (0.5 + 0.5 * np.sin(1.3 * i + 0.7 * j)).astype(np.float32).astype(np.float64)
    y = (2 * np.arange(N) + 1) % 3
    return x, y


def params(d):
    k = np.arange(d)
    return (0.3 * np.cos(0.9 * k + 0.2)).astype(np.float32).astype(np.float64)


def softmax_ce(z, y):
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    loss = np.mean(lse - z[np.arange(len(y)), y])
    p = np.exp(z - lse[:, None])
    p[np.arange(len(y)), y] -= 1.0
    acc = np.mean(z.argmax(axis=1) == y)  # argmax: first maximum
    return loss, p / len(y), acc


def mlp(x, y):
    d = H * IN + H + C * H + C
    p = params(d)
    w1 = p[:H * IN].reshape(H, IN)
    b1 = p[H * IN:H * IN + H]
    w2 = p[H * IN + H:H * IN + H + C * H].reshape(C, H)
    b2 = p[H * IN + H + C * H:]
    a = np.maximum(x @ w1.T + b1, 0.0)
    z = a @ w2.T + b2
    loss, dz, acc = softmax_ce(z, y)
    gw2 = dz.T @ a
    gb2 = dz.sum(axis=0)
    da = (dz @ w2) * (a > 0)
    gw1 = da.T @ x
    gb1 = da.sum(axis=0)
    return loss, np.concatenate([gw1.ravel(), gb1, gw2.ravel(), gb2]), acc


def logreg(x, y):
    d = C * IN + C
    p = params(d)
    w = p[:C * IN].reshape(C, IN)
    b = p[C * IN:]
    z = x @ w.T + b
    loss, dz, acc = softmax_ce(z, y)
    return loss, np.concatenate([(dz.T @ x).ravel(), dz.sum(axis=0)]), acc


def emit(name, loss, g, acc):
    print(f"/* {name}: d = {len(g)} */")
    print(f"static const double {name}_loss = {loss:.17g};")
    print(f"static const double {name}_acc = {acc:.17g};")
    print(f"static const double {name}_grad[{len(g)}] = {{")
    for i in range(0, len(g), 4):
        print("    " + ", ".join(f"{v:.17g}" for v in g[i:i + 4]) + ",")
    print("};")


if __name__ == "__main__":
    x, y = inputs()
    emit("ref_mlp", *mlp(x, y))
    emit("ref_logreg", *logreg(x, y))
