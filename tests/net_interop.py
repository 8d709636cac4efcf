#!/usr/bin/env python3
"""Interop: fedpress/1 between net/ (C, tests/net_peer.c) and an independent
Noise implementation, python3-dissononce (Debian), with each side played by
each: C client vs Python server, then Python client vs C server.

The Python side does its own framing from docs/protocol.md: the magic, the
length-prefixed handshake messages, records, and messages written as one
byte stream cut into records of at most 65519 plaintext bytes (so a header
and the start of its payload share a record, unlike the C sender: the C
receiver must take both). The dialog is the one tests/net_peer.c describes.
Checks: both sides derive the same handshake hash, each learns the other's
static key, every payload arrives intact both ways, and a tampered record
is refused by dissononce's side. Exits 77 (skip) when dissononce is missing.

usage: net_interop.py PATH/TO/net_peer
"""
import os
import struct
import subprocess
import sys
import threading

try:
    from dissononce.processing.impl.handshakestate import HandshakeState
    from dissononce.processing.impl.symmetricstate import SymmetricState
    from dissononce.processing.impl.cipherstate import CipherState
    from dissononce.processing.handshakepatterns.interactive.XK import XKHandshakePattern
    from dissononce.cipher.chachapoly import ChaChaPolyCipher
    from dissononce.dh.x25519.x25519 import X25519DH
    from dissononce.dh.private import PrivateKey
    from dissononce.hash.sha256 import SHA256Hash
    from dissononce.exceptions.decrypt import DecryptFailedException
except ImportError as e:
    print(f"SKIP: python3-dissononce is not installed ({e}); apt-get install python3-dissononce")
    sys.exit(77)

MAGIC = b"FPN\x01"
PROLOGUE = b"fedpress/1"
RUN, CLIENT, ROUNDS = 42, 5, 4
SIZES = [0, 1, 70000, 200000]
PLAIN_MAX = 65535 - 16
WELCOME, BROADCAST, UPLOAD = 2, 3, 4


def header(type_, round_, length, phase=0):
    # version, type, phase, client, run, round, reserved, len: little-endian
    return struct.pack("<BBHIQIIQ", 1, type_, phase, CLIENT, RUN, round_, 0, length)


def pattern(n, r):
    return bytes((j * 31 + r) & 255 for j in range(n))


class Wire:
    def __init__(self, rfile, wfile):
        self.r, self.w = rfile, wfile

    def read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.r.read(n - len(buf))
            if not chunk:
                raise EOFError(f"connection closed with {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def write(self, data):
        self.w.write(data)
        self.w.flush()

    def read_framed(self):
        (n,) = struct.unpack(">H", self.read(2))
        return self.read(n)

    def write_framed(self, data):
        assert len(data) <= 65535
        self.write(struct.pack(">H", len(data)) + data)


class Records:
    """Records over a Wire with dissononce CipherStates; messages as a
    stream of plaintext cut into records."""

    def __init__(self, wire, send, recv):
        self.wire, self.send, self.recv = wire, send, recv
        self.pending = b""

    def send_message(self, type_, round_, payload):
        data = header(type_, round_, len(payload)) + payload
        for off in range(0, len(data), PLAIN_MAX):
            ct = self.send.encrypt_with_ad(b"", data[off:off + PLAIN_MAX])
            self.wire.write_framed(ct)

    def _more(self):
        self.pending += self.recv.decrypt_with_ad(b"", self.wire.read_framed())

    def recv_message(self):
        while len(self.pending) < 32:
            self._more()
        ver, type_, phase, client, run, round_, res, length = struct.unpack(
            "<BBHIQIIQ", self.pending[:32])
        assert (ver, client, run, res, phase) == (1, CLIENT, RUN, 0, 0), "bad header"
        assert length <= 1 << 20, "declared length over the cap"
        while len(self.pending) < 32 + length:
            self._more()
        payload = self.pending[32:32 + length]
        self.pending = self.pending[32 + length:]
        return type_, round_, payload


def new_handshake(initiator, s, rs=None):
    hs = HandshakeState(SymmetricState(CipherState(ChaChaPolyCipher()), SHA256Hash()), X25519DH())
    hs.initialize(XKHandshakePattern(), initiator, PROLOGUE, s=s, rs=rs)
    return hs


def start_peer(peer, args):
    proc = subprocess.Popen([peer] + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    err = []
    t = threading.Thread(target=lambda: err.append(proc.stderr.read().decode()), daemon=True)
    t.start()
    return proc, err, t


def finish_peer(proc, err, t, who):
    try:
        proc.stdin.close()
    except BrokenPipeError:
        pass
    rc = proc.wait(timeout=60)
    t.join(timeout=60)
    text = err[0] if err else ""
    if rc != 0:
        raise AssertionError(f"{who} exited {rc}: {text.strip()}")
    fields = text.split()
    assert fields[0] == "handshake", text
    return bytes.fromhex(fields[1]), bytes.fromhex(fields[3]), bytes.fromhex(fields[5]) \
        if len(fields) > 5 else b""


def c_client_vs_py_server(peer, dh):
    server = dh.generate_keypair()
    client = dh.generate_keypair()
    proc, err, t = start_peer(peer, ["client", client.private.data.hex(),
                                     server.public.data.hex()])
    wire = Wire(proc.stdout, proc.stdin)
    assert wire.read(4) == MAGIC, "bad magic"
    hs = new_handshake(False, server)
    buf = bytearray()
    hs.read_message(wire.read_framed(), buf)
    assert bytes(buf) == b"", "message 1 payload"
    out = bytearray()
    hs.write_message(b"", out)
    wire.write_framed(bytes(out))
    hello = bytearray()
    cs = hs.read_message(wire.read_framed(), hello)
    assert bytes(hello) == b"c-hello", hello
    assert hs.rs.data == client.public.data, "client static key"
    h = hs.symmetricstate.get_handshake_hash()
    # Responder: receives with the first key, sends with the second.
    rec = Records(wire, cs[1], cs[0])
    rec.send_message(WELCOME, 0, b"welcome:" + bytes(hello))
    for r in range(1, ROUNDS + 1):
        type_, round_, payload = rec.recv_message()
        assert (type_, round_) == (UPLOAD, r)
        assert payload == pattern(SIZES[r - 1], r), f"upload {r}"
        rec.send_message(BROADCAST, r, payload[::-1])
    assert proc.stdout.read() == b"", "bytes after the last message"
    ch, cpeer, _ = finish_peer(proc, err, t, "C client")
    assert ch == h, f"handshake hash: C {ch.hex()} python {h.hex()}"
    assert cpeer == server.public.data
    print("ok - C client, python (dissononce) server: handshake hash", h.hex())


def py_client_vs_c_server(peer, dh, tamper=False):
    server = dh.generate_keypair()
    client = dh.generate_keypair()
    proc, err, t = start_peer(peer, ["server", server.private.data.hex()])
    wire = Wire(proc.stdout, proc.stdin)
    hs = new_handshake(True, client, rs=server.public)
    out = bytearray()
    hs.write_message(b"", out)
    wire.write(MAGIC)
    wire.write_framed(bytes(out))
    buf = bytearray()
    hs.read_message(wire.read_framed(), buf)
    out = bytearray()
    cs = hs.write_message(b"py-hello", out)
    wire.write_framed(bytes(out))
    h = hs.symmetricstate.get_handshake_hash()
    rec = Records(wire, cs[0], cs[1])
    type_, round_, payload = rec.recv_message()
    assert (type_, round_, payload) == (WELCOME, 0, b"welcome:py-hello"), payload
    if tamper:
        # A flipped bit in the first record: the C server must refuse it
        # (exit 1, naming the record), never echo.
        data = header(UPLOAD, 1, 0)
        ct = bytearray(rec.send.encrypt_with_ad(b"", data))
        ct[5] ^= 0x01
        wire.write_framed(bytes(ct))
        proc.stdin.close()
        rc = proc.wait(timeout=60)
        t.join(timeout=60)
        assert rc == 1 and "does not authenticate" in err[0], (rc, err)
        print("ok - C server refuses a record dissononce's keys sealed, with one bit flipped")
        return
    for r in range(1, ROUNDS + 1):
        sent = pattern(SIZES[r - 1], r)
        rec.send_message(UPLOAD, r, sent)
        type_, round_, payload = rec.recv_message()
        assert (type_, round_) == (BROADCAST, r)
        assert payload == sent[::-1], f"broadcast {r}"
    ch, cpeer, chello = finish_peer(proc, err, t, "C server")
    assert ch == h, f"handshake hash: C {ch.hex()} python {h.hex()}"
    assert cpeer == client.public.data, "the C server learnt another client key"
    assert chello == b"py-hello"
    print("ok - python (dissononce) client, C server: handshake hash", h.hex())


def c_tampered_for_py(peer, dh):
    """The C client's records, one bit flipped in transit: dissononce refuses."""
    server = dh.generate_keypair()
    client = dh.generate_keypair()
    proc, err, t = start_peer(peer, ["client", client.private.data.hex(),
                                     server.public.data.hex()])
    wire = Wire(proc.stdout, proc.stdin)
    wire.read(4)
    hs = new_handshake(False, server)
    hs.read_message(wire.read_framed(), bytearray())
    out = bytearray()
    hs.write_message(b"", out)
    wire.write_framed(bytes(out))
    hello = bytearray()
    cs = hs.read_message(wire.read_framed(), hello)
    rec = Records(wire, cs[1], cs[0])
    rec.send_message(WELCOME, 0, b"welcome:c-hello")
    ct = bytearray(wire.read_framed())
    ct[-1] ^= 0x01
    try:
        rec.recv.decrypt_with_ad(b"", bytes(ct))
        raise AssertionError("dissononce accepted a tampered record")
    except DecryptFailedException:
        pass
    proc.stdin.close()
    proc.kill()
    proc.wait()
    print("ok - dissononce refuses a C record with one bit flipped")


def main():
    if len(sys.argv) != 2 or not os.access(sys.argv[1], os.X_OK):
        print("usage: net_interop.py PATH/TO/net_peer", file=sys.stderr)
        return 2
    peer = sys.argv[1]
    dh = X25519DH()
    failures = 0
    for name, fn in [("C client vs python server", lambda: c_client_vs_py_server(peer, dh)),
                     ("python client vs C server", lambda: py_client_vs_c_server(peer, dh)),
                     ("tampered record to C", lambda: py_client_vs_c_server(peer, dh, True)),
                     ("tampered record to python", lambda: c_tampered_for_py(peer, dh))]:
        try:
            fn()
        except Exception as e:  # report every case, then fail
            failures += 1
            print(f"FAIL - {name}: {type(e).__name__}: {e}")
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
