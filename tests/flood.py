#!/usr/bin/env python3
"""tests/flood.py — silent TCP connections from one source address, for
tests/e2e_admin.sh (the coordinator's per-address cap on connections in
their handshake). Standard library only.

  flood.py burst SRC PORT N   open one connection from 127.0.0.1 (a
                              client in its handshake), then N from SRC,
                              say nothing, and print 'open K, 127.0.0.1
                              open|closed' once K (how many of SRC's the
                              coordinator left open) has not changed for
                              1 s (at most 5 s)
  flood.py steady SRC PORT STOPFILE
                              open one connection after another from SRC
                              (at most 200 held; the oldest closed first)
                              until STOPFILE exists (at most 60 s); print
                              'opened K'
"""
import os
import select
import socket
import sys
import time


def connect(src, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def closed_by_peer(s):
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return False
    try:
        return s.recv(1) == b""
    except OSError:
        return True


def burst(src, port, n):
    first = connect("127.0.0.1", port)
    socks = [connect(src, port) for _ in range(n)]
    last, since = -1, time.monotonic()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5:
        k = sum(1 for s in socks if not closed_by_peer(s))
        if k != last:
            last, since = k, time.monotonic()
        elif time.monotonic() - since >= 1:
            break
        time.sleep(0.05)
    print("open %d, 127.0.0.1 %s" % (last, "closed" if closed_by_peer(first) else "open"),
          flush=True)


def steady(src, port, stop):
    held, opened = [], 0
    t0 = time.monotonic()
    while not os.path.exists(stop) and time.monotonic() - t0 < 60:
        try:
            held.append(connect(src, port))
            opened += 1
        except OSError:
            time.sleep(0.01)
        if len(held) > 200:
            held.pop(0).close()
        time.sleep(0.002)
    print("opened %d" % opened, flush=True)


if __name__ == "__main__":
    mode, src, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "burst":
        burst(src, port, int(sys.argv[4]))
    else:
        steady(src, port, sys.argv[4])
