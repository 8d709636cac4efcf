#!/usr/bin/python3
"""bench/torch_reference.py — the same client update as fedpress, in PyTorch.

What is timed is one FedAvg client update of the paper's setting, written the
way a PyTorch user would write it: MLP 784-200-10 (nn.Linear, ReLU), softmax
cross-entropy (mean), plain SGD lr 0.05, K = 10 steps of batch 32 drawn
without replacement from one client's 300 examples, starting from the global
model (loaded from a flat vector) and ending with the flat update x - y^K,
as fp_algo_client_update does. Every update uses another client's data.

torch.set_num_threads(1): parallelism is across clients, as in fedpress, so
the fair comparison is one update per core. With --procs 2 (default: also
run it), two processes train concurrently and the aggregate rate is
reported, mirroring bench_train's 2-thread figure.

Run with Debian's interpreter (python3-torch, python3-numpy):
    /usr/bin/python3 bench/torch_reference.py [--quick] [--data DIR]
"""
import argparse
import gzip
import multiprocessing as mp
import os
import platform
import sys
import time

# Debian's torch calls OpenBLAS (openblas-pthread) for its GEMMs, and
# torch.set_num_threads(1) does not reach OpenBLAS's own thread pool: without
# this, the weight-gradient GEMM runs on 2 OpenBLAS threads per process and
# collapses (measured ~6 GFLOP/s instead of ~85 while another core is busy).
# Must be set before numpy or torch loads OpenBLAS (it reads the variable
# once, at load); spawned workers inherit it.
# Override from the shell (OPENBLAS_NUM_THREADS=2 ...) to measure that trap.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

IN, HIDDEN, CLASSES = 784, 200, 10
K, BATCH, LR, LOCAL = 10, 32, 0.05, 300


def load_idx(path):
    """IDX (gzip) -> numpy array; the header's dims give the shape."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def make_clients(data_dir, n_clients, seed):
    """Clients of two classes, 150 examples each (shards:2 with 400 shards of
    150): the same data volume per update as fedpress's paper scenario. The
    exact shard assignment does not matter for speed."""
    x = load_idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz"))
    y = load_idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(x.reshape(len(x), IN).astype(np.float32) / 255.0)
    y = torch.from_numpy(y.astype(np.int64))
    g = torch.Generator().manual_seed(seed)
    by_class = [torch.nonzero(y == c).flatten() for c in range(CLASSES)]
    clients = []
    for i in range(n_clients):
        a, b = torch.randperm(CLASSES, generator=g)[:2].tolist()
        pa = by_class[a][torch.randperm(len(by_class[a]), generator=g)[:LOCAL // 2]]
        pb = by_class[b][torch.randperm(len(by_class[b]), generator=g)[:LOCAL // 2]]
        idx = torch.cat([pa, pb])
        clients.append((x[idx].contiguous(), y[idx].contiguous()))
    return clients


class Update:
    """One worker's model, optimiser and global model, reused across updates
    (as fedpress reuses its per-thread workspace)."""

    def __init__(self, seed):
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.x = nn.utils.parameters_to_vector(self.model.parameters()).detach().clone()
        self.gen = torch.Generator().manual_seed(seed)

    def run(self, data):
        xs, ys = data
        nn.utils.vector_to_parameters(self.x, self.model.parameters())  # y^0 = x
        for _ in range(K):
            sel = torch.randperm(len(xs), generator=self.gen)[:BATCH]
            loss = F.cross_entropy(self.model(xs[sel]), ys[sel])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        with torch.no_grad():
            return self.x - nn.utils.parameters_to_vector(self.model.parameters())


def time_updates(clients, reps, per_rep, seed):
    """Best-of-reps updates per second on this process, one thread."""
    torch.set_num_threads(1)
    up = Update(seed)
    for c in clients[:8]:  # warm-up: allocator, autograd graph caches
        up.run(c)
    best = 0.0
    n = len(clients)
    for r in range(reps):
        t0 = time.perf_counter()
        for i in range(per_rep):
            up.run(clients[(r * per_rep + i) % n])
        rate = per_rep / (time.perf_counter() - t0)
        best = max(best, rate)
    return best


def worker(args, barrier, q, seed):
    torch.set_num_threads(1)
    clients = make_clients(args.data, args.clients, seed)
    up = Update(seed)
    for c in clients[:8]:
        up.run(c)
    best = 0.0
    for r in range(args.reps):
        barrier.wait()  # both processes start each rep together
        t0 = time.perf_counter()
        for i in range(args.updates):
            up.run(clients[(r * args.updates + i) % len(clients)])
        best = max(best, args.updates / (time.perf_counter() - t0))
    q.put(best)


def sgemm_rates(reps):
    """torch.mm on the two big shapes of a step, one thread (its BLAS)."""
    torch.set_num_threads(1)
    x, w1 = torch.rand(BATCH, IN), torch.rand(HIDDEN, IN)
    dz = torch.rand(BATCH, HIDDEN)
    flops = 2.0 * BATCH * HIDDEN * IN
    out = {}
    for name, fn in (("forward X·W1ᵀ", lambda: torch.mm(x, w1.t())),
                     ("wgrad dZᵀ·X", lambda: torch.mm(dz.t(), x))):
        for _ in range(50):
            fn()
        best = 0.0
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(500):
                fn()
            best = max(best, 500 * flops / (time.perf_counter() - t0) / 1e9)
        out[name] = best
    return out


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--procs", type=int, choices=(1, 2), default=2,
                    help="also time 2 concurrent processes (default 2)")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows even into a file
    # Many short reps, as bench_train: the best one ran in the quietest window.
    args.reps = 2 if args.quick else 11
    args.updates = 40 if args.quick else 100
    args.clients = 200

    print("command:", " ".join([sys.executable] + sys.argv))
    print("date:", time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    print(f"CPU: {cpu_model()}, {os.cpu_count()} online cores")
    print(f"torch {torch.__version__}, numpy {np.__version__}, python {platform.python_version()}")
    print("OPENBLAS_NUM_THREADS =", os.environ["OPENBLAS_NUM_THREADS"],
          "; torch threads =", 1)
    print("load average at start:", " ".join(f"{v:.2f}" for v in os.getloadavg()))
    flops = K * BATCH * (4 * IN * HIDDEN + 6 * HIDDEN * CLASSES)

    print("\ntorch.mm, 1 thread (best of", args.reps, "x 500 calls):")
    for name, r in sgemm_rates(args.reps).items():
        print(f"  {name:16s} {r:7.1f} GFLOP/s")

    clients = make_clients(args.data, args.clients, 1)
    r1 = time_updates(clients, args.reps, args.updates, 1)
    print(f"\nclient update (MLP {IN}-{HIDDEN}-{CLASSES}, K={K}, B={BATCH}, SGD lr {LR}), "
          f"best of {args.reps} reps of {args.updates}:")
    print(f"{'procs':<7}{'updates/s':>11}{'ms/update':>11}{'GFLOP/s':>10}{'speedup':>9}")
    print(f"{1:<7}{r1:11.1f}{1e3 / r1:11.3f}{r1 * flops / 1e9:10.1f}{'1.00x':>9}")
    if args.procs == 2:
        ctx = mp.get_context("spawn")
        barrier, q = ctx.Barrier(2), ctx.Queue()
        ps = [ctx.Process(target=worker, args=(args, barrier, q, 1 + i)) for i in range(2)]
        for p in ps:
            p.start()
        rates = [q.get() for _ in ps]
        for p in ps:
            p.join()
        r2 = sum(rates)
        print(f"{2:<7}{r2:11.1f}{1e3 / r2:11.3f}{r2 * flops / 1e9:10.1f}{r2 / r1:8.2f}x")
        print("(2 procs: sum of each process's best rep; the reps start together on a barrier)")
    print(f"FLOPs per update counted as in bench_train: {flops / 1e6:.1f} MFLOP")
    print("load average at end:", " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
