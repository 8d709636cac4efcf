#!/usr/bin/env python3
"""tests/flood.py — silent TCP connections from one source address, for
tests/e2e_admin.sh (the coordinator's per-address cap on connections in
their handshake). Standard library only.

  flood.py burst SRC PORT N CAP
                              open one connection from 127.0.0.1 (a
                              client in its handshake), then N from SRC,
                              say nothing, and print 'open K, 127.0.0.1
                              open|closed' once K (how many of SRC's the
                              coordinator left open) is CAP or less (at
                              most 20 s: a coordinator without the cap
                              keeps more until its handshake deadline)
  flood.py steady SRC PORT STOPFILE
                              open one connection after another from SRC
                              (at most 200 held; the oldest closed first)
                              until STOPFILE exists (at most 60 s); print
                              'opened K'
  flood.py burst6 PREFIX HONEST DST PORT N CAP
                              as burst, over IPv6 to [DST]:PORT: the first
                              connection from HONEST, then N from PREFIX1,
                              PREFIX2, ... PREFIXN (hex, one source
                              address each, all in PREFIX's /64)
"""
import os
import select
import socket
import sys
import time


def connect(src, port, dst="127.0.0.1"):
    s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.connect((dst, port))
    return s


def closed_by_peer(s):
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return False
    try:
        return s.recv(1) == b""
    except OSError:
        return True


def burst(src, port, n, cap, honest="127.0.0.1", dst="127.0.0.1"):
    first = connect(honest, port, dst)
    socks = [connect(src(i) if callable(src) else src, port, dst) for i in range(n)]
    t0 = time.monotonic()
    while True:
        k = sum(1 for s in socks if not closed_by_peer(s))
        if k <= cap or time.monotonic() - t0 > 20:
            break
        time.sleep(0.05)
    print("open %d, %s %s" % (k, honest, "closed" if closed_by_peer(first) else "open"),
          flush=True)


def steady(src, port, stop):
    held, opened, failed, why = [], 0, 0, ""
    t0 = time.monotonic()
    while not os.path.exists(stop) and time.monotonic() - t0 < 60:
        try:
            held.append(connect(src, port))
            opened += 1
        except OSError as e:
            failed, why = failed + 1, str(e)
            time.sleep(0.01)
        if len(held) > 200:
            held.pop(0).close()
        time.sleep(0.002)
    print("opened %d" % opened + (", %d failed (%s)" % (failed, why) if failed else ""),
          flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "burst6":
        prefix, honest, dst = sys.argv[2], sys.argv[3], sys.argv[4]
        burst(lambda i: "%s%x" % (prefix, i + 1), int(sys.argv[5]), int(sys.argv[6]),
              int(sys.argv[7]), honest, dst)
        sys.exit(0)
    mode, src, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "burst":
        burst(src, port, int(sys.argv[4]), int(sys.argv[5]))
    else:
        steady(src, port, sys.argv[4])
