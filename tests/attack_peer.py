#!/usr/bin/env python3
"""A hostile fedpress/1 client for tests/e2e_attack.sh: it speaks the wire of
docs/protocol.md with python3-dissononce (as tests/net_interop.py does) and
then misbehaves in one named way against a running `fedpress coordinator`.

usage: attack_peer.py MODE PORT SERVER_PUBHEX KEYFILE [SECONDS]

MODE (what the peer does; SECONDS bounds how long it holds on):
  silent     connect, never send a byte, wait for the close
  slowhs     send the handshake one byte per second
  garbage    complete the handshake, then send a record that does not
             authenticate
  hugelen    on its broadcast, a result header declaring 2^62 bytes
  wronground on its broadcast, a result for the round after
  otherid    on its broadcast, a result naming another client id
  dup        on its broadcast, the report and an upload, then the upload again
  nan        on its broadcast, the report and an upload of NaNs of the
             broadcast's size
  nanloss    on its broadcast, a report whose loss is NaN
  errempty   after the welcome, an error message with an empty payload
  midmsg     on its broadcast, half of the report's record, then close
  trickle    on its broadcast, the report's record one byte per second
  many       open SECONDS connections that never speak; count the closes
  noread     complete the handshake, shrink the receive buffer, never read
             again; hold SECONDS
  hbflood    on its broadcast, empty heartbeats in a tight loop instead of
             its report and upload, for SECONDS; prints "sent K heartbeats"

Prints "welcome RUN CLIENT", "broadcast ROUND PHASE LEN", then "closed
after S s: REASON" (the coordinator's error message if one came) or
"held S s". Exit 0 unless the peer itself could not do its part (exit 3).
Exits 77 when dissononce is missing.
"""
import math
import os
import socket
import struct
import sys
import time

try:
    from dissononce.processing.impl.handshakestate import HandshakeState
    from dissononce.processing.impl.symmetricstate import SymmetricState
    from dissononce.processing.impl.cipherstate import CipherState
    from dissononce.processing.handshakepatterns.interactive.XK import XKHandshakePattern
    from dissononce.cipher.chachapoly import ChaChaPolyCipher
    from dissononce.dh.x25519.x25519 import X25519DH
    from dissononce.dh.x25519.public import PublicKey
    from dissononce.dh.private import PrivateKey
    from dissononce.dh.keypair import KeyPair
    from dissononce.hash.sha256 import SHA256Hash
except ImportError as e:
    print(f"SKIP: python3-dissononce is not installed ({e})")
    sys.exit(77)

MAGIC = b"FPN\x01"
PROLOGUE = b"fedpress/1"
PLAIN_MAX = 65535 - 16
WELCOME, BROADCAST, UPLOAD, RESULT, HEARTBEAT, ERROR = 2, 3, 4, 5, 6, 7
HDR = "<BBHIQIIQ"  # version, type, phase, client, run, round, reserved, len


def header(type_, phase, client, run, round_, length):
    return struct.pack(HDR, 1, type_, phase, client, run, round_, 0, length)


class Closed(Exception):
    pass


class Peer:
    def __init__(self, port, server_pub, priv, rcvbuf=0):
        self.t0 = time.monotonic()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.server_pub = server_pub
        self.priv = priv
        self.pending = b""
        self.last_error = ""

    def elapsed(self):
        return time.monotonic() - self.t0

    def read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise Closed(f"EOF with {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def framed(self):
        (n,) = struct.unpack(">H", self.read(2))
        return self.read(n)

    def handshake_bytes(self):
        dh = X25519DH()
        kp = dh.generate_keypair(PrivateKey(self.priv))
        hs = HandshakeState(SymmetricState(CipherState(ChaChaPolyCipher()), SHA256Hash()), dh)
        hs.initialize(XKHandshakePattern(), True, PROLOGUE, s=kp, rs=PublicKey(self.server_pub))
        out = bytearray()
        hs.write_message(b"", out)
        return hs, MAGIC + struct.pack(">H", len(out)) + bytes(out)

    def handshake(self, slow=False):
        hs, first = self.handshake_bytes()
        if slow:
            for b in first:
                self.sock.sendall(bytes([b]))
                time.sleep(1)
        else:
            self.sock.sendall(first)
        hs.read_message(self.framed(), bytearray())
        out = bytearray()
        cs = hs.write_message(b"", out)
        self.sock.sendall(struct.pack(">H", len(out)) + bytes(out))
        self.send_cs, self.recv_cs = cs[0], cs[1]

    def record(self, plain):
        ct = self.send_cs.encrypt_with_ad(b"", plain)
        return struct.pack(">H", len(ct)) + ct

    def send(self, type_, phase, client, run, round_, payload, length=None):
        data = header(type_, phase, client, run, round_,
                      len(payload) if length is None else length) + payload
        for off in range(0, len(data), PLAIN_MAX):
            self.sock.sendall(self.record(data[off:off + PLAIN_MAX]))

    def recv(self):
        while len(self.pending) < 32:
            self.pending += self.recv_cs.decrypt_with_ad(b"", self.framed())
        h = struct.unpack(HDR, self.pending[:32])
        n = h[7]
        if n > 1 << 26:
            raise Closed(f"the coordinator declared {n} bytes")
        while len(self.pending) < 32 + n:
            self.pending += self.recv_cs.decrypt_with_ad(b"", self.framed())
        payload = self.pending[32:32 + n]
        self.pending = self.pending[32 + n:]
        if h[1] == ERROR:
            self.last_error = payload.decode(errors="replace")
            raise Closed("error: " + self.last_error)
        return h, payload

    def wait_close(self, limit):
        """Reads until the coordinator closes; the reason."""
        self.sock.settimeout(limit)
        try:
            while True:
                self.recv()
        except Closed as e:
            return str(e)
        except socket.timeout:
            return "TIMEOUT (still open)"
        except OSError as e:
            return f"{type(e).__name__}: {e}"


def read_key(path):
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            return bytes.fromhex(line)
    raise SystemExit(f"{path}: no key line")


def main():
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    mode, port, spub, keyfile = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3]), \
        sys.argv[4]
    hold = float(sys.argv[5]) if len(sys.argv) > 5 else 30
    priv = read_key(keyfile)
    if mode == "many":
        # K connections that never speak (K = SECONDS here): how many the
        # coordinator closes at once, how many it keeps until the deadline
        k = int(hold)
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(k)]
        def closed(sk):
            try:
                return sk.recv(1) == b""
            except BlockingIOError:
                return False
            except OSError:
                return True

        for sk in socks:
            sk.setblocking(False)
        time.sleep(0.5)
        early = sum(closed(sk) for sk in socks)
        print(f"opened {k}, closed within 0.5 s: {early}", flush=True)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30 and not all(closed(sk) for sk in socks):
            time.sleep(0.1)
        late = sum(closed(sk) for sk in socks)
        print(f"closed {late} of {k} after {time.monotonic() - t0 + 0.5:.1f} s", flush=True)
        return 0
    p = Peer(port, spub, priv, rcvbuf=4096 if mode == "noread" or mode.startswith("blind") else 0)
    try:
        if mode == "silent":
            p.sock.settimeout(hold)
            try:
                why = "EOF" if not p.sock.recv(1) else "a byte"
            except socket.timeout:
                why = "TIMEOUT (still open)"
            print(f"closed after {p.elapsed():.1f} s: {why}", flush=True)
            return 0
        p.handshake(slow=(mode == "slowhs"))
        if mode == "noread":
            time.sleep(hold)
            print(f"held {p.elapsed():.1f} s", flush=True)
            return 0
        if mode == "garbage":
            p.sock.sendall(struct.pack(">H", 64) + os.urandom(64))
            print(f"closed after {p.elapsed():.1f} s: {p.wait_close(hold)}", flush=True)
            return 0
        h, welcome = p.recv()
        run, me = h[4], h[3]
        print(f"welcome {run} {me}", flush=True)
        if mode.startswith("blind"):
            # answers rounds 1..R without reading their broadcasts (an upload
            # of zeros of the size "blind:BYTES:R" says), and never reads
            _, nbytes, rounds = mode.split(":")
            body = b"\0" * int(nbytes)
            try:
                for r in range(1, int(rounds) + 1):
                    p.send(RESULT, 0, me, run, r, struct.pack("<d", 0.5))
                    p.send(UPLOAD, 0, me, run, r, body)
                    print(f"answered round {r} at {p.elapsed():.1f} s", flush=True)
                    time.sleep(0.5)
            except OSError as e:
                print(f"closed after {p.elapsed():.1f} s: {e}", flush=True)
                return 0
            time.sleep(hold)
            print(f"held {p.elapsed():.1f} s", flush=True)
            return 0
        if mode == "errempty":
            p.send(ERROR, 0, me, run, 0, b"")
            print(f"closed after {p.elapsed():.1f} s: {p.wait_close(hold)}", flush=True)
            return 0
        h, bc = p.recv()
        _, type_, phase, _, _, round_, _, n = h
        print(f"broadcast {round_} {phase} {n}", flush=True)
        loss = struct.pack("<d", 0.5)
        if mode == "hugelen":
            p.send(RESULT, phase, me, run, round_, b"", length=1 << 62)
        elif mode == "wronground":
            p.send(RESULT, phase, me, run, round_ + 1, loss)
        elif mode == "otherid":
            p.send(RESULT, phase, me ^ 1, run, round_, loss)
        elif mode == "nanloss":
            p.send(RESULT, phase, me, run, round_, struct.pack("<d", math.nan))
        elif mode in ("dup", "nan"):
            p.send(RESULT, phase, me, run, round_, loss)
            if mode == "nan":
                body = struct.pack("<f", math.nan) * (n // 4) + b"\0" * (n % 4)
            else:
                body = bc  # the broadcast's bytes: the size a dense upload has
            p.send(UPLOAD, phase, me, run, round_, body)
            if mode == "dup":
                p.send(UPLOAD, phase, me, run, round_, body)
        elif mode == "midmsg":
            rec = p.record(header(RESULT, phase, me, run, round_, 8) + loss)
            p.sock.sendall(rec[:len(rec) // 2])
            p.sock.close()
            print(f"closed by us after {p.elapsed():.1f} s", flush=True)
            return 0
        elif mode == "hbflood":
            k, t0 = 0, time.monotonic()
            try:
                while time.monotonic() - t0 < hold:
                    for _ in range(100):
                        p.send(HEARTBEAT, 0, me, run, 0, b"")
                    k += 100
            except OSError as e:
                print(f"sent {k} heartbeats; closed after {p.elapsed():.1f} s: {e}", flush=True)
                return 0
            print(f"sent {k} heartbeats in {time.monotonic() - t0:.1f} s", flush=True)
        elif mode == "trickle":
            rec = p.record(header(RESULT, phase, me, run, round_, 8) + loss)
            try:
                for b in rec:
                    p.sock.sendall(bytes([b]))
                    time.sleep(1)
            except OSError as e:
                print(f"closed after {p.elapsed():.1f} s: {e}", flush=True)
                return 0
            print(f"trickled {len(rec)} bytes in {p.elapsed():.1f} s", flush=True)
        else:
            print(f"unknown mode {mode}", file=sys.stderr)
            return 2
        print(f"closed after {p.elapsed():.1f} s: {p.wait_close(hold)}", flush=True)
        return 0
    except Closed as e:
        print(f"closed after {p.elapsed():.1f} s: {e}", flush=True)
        return 0
    except OSError as e:
        print(f"closed after {p.elapsed():.1f} s: {type(e).__name__}: {e}", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
