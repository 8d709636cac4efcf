#!/usr/bin/python3
"""Facts about the installed Fashion-MNIST that tests/test_idx.c asserts.

Run: /usr/bin/python3 tests/reference/fmnist_facts.py [DIR]
(DIR defaults to /usr/share/datasets/fashion-mnist, package dataset-fashion-mnist.)
"""
import gzip
import sys

import numpy as np

d = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
for split in ("train", "t10k"):
    y = np.frombuffer(gzip.open(f"{d}/{split}-labels-idx1-ubyte.gz").read()[8:], np.uint8)
    x = np.frombuffer(gzip.open(f"{d}/{split}-images-idx3-ubyte.gz").read()[16:], np.uint8)
    x = x.reshape(len(y), 784).astype(np.int64)
    print(split, "n =", len(y), "first labels =", y[:10].tolist(),
          "per class =", np.bincount(y).tolist(),
          "first image byte sum =", int(x[0].sum()), "all bytes sum =", int(x.sum()))
