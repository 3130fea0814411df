"""A raw-socket WebSocket client with permessage-deflate (RFC 7692) for
talon's deflate tests.

Everything on the wire is done by hand (handshake, frames with any RSV
bits, fragmentation) and compression uses Python's zlib with raw deflate
(wbits=-N), so tests see exactly which frames carry RSV1 and can send
malformed compressed data. Every blocking call has a timeout.
"""
import os
import socket
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
import wsframe  # noqa: E402
from wsframe import (HOST, OP_BINARY, OP_CLOSE, OP_CONT,  # noqa: E402,F401
                     OP_PING, OP_PONG, OP_TEXT, Closed, FrameReader, Timeout,
                     accept_for, new_key, read_head)

TAIL = b"\x00\x00\xff\xff"
DEFAULT_TIMEOUT = 10.0


def build_frame(opcode, payload=b"", fin=True, rsv1=False, rsv=0):
    """One masked client frame. `rsv1` sets RSV1; `rsv` adds raw RSV bits
    (4 = RSV1, 2 = RSV2, 1 = RSV3)."""
    return wsframe.build_frame(opcode, payload, fin=fin,
                               rsv=rsv | (4 if rsv1 else 0))


def deflate_raw(data, wbits=15, level=6, obj=None):
    """One message compressed (sync flush, tail removed). `obj`: a
    compressobj to keep context across messages."""
    c = obj or zlib.compressobj(level, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL), out[-8:]
    return out[:-4]


def parse_extension(value):
    """'permessage-deflate; a; b=1' -> ('permessage-deflate',
    {'a': None, 'b': '1'}). None for None."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(";")]
    params = {}
    for p in parts[1:]:
        k, eq, v = p.partition("=")
        params[k.strip()] = v.strip().strip('"') if eq else None
    return parts[0], params


class Message:
    def __init__(self, opcode, data, frames):
        self.opcode = opcode
        self.data = data
        self.frames = frames  # [(fin, rsv, opcode, payload)]

    @property
    def compressed(self):
        return bool(self.frames[0][1] & 4)

    @property
    def wire_len(self):
        return sum(len(f[3]) for f in self.frames)

    def __repr__(self):
        d = self.data if len(self.data) <= 40 else (
            self.data[:40] + b"...(%d bytes)" % len(self.data))
        return f"<op {self.opcode} rsv1={self.compressed} {d!r}>"


class CloseFrame:
    def __init__(self, payload):
        self.code = struct.unpack("!H", payload[:2])[0] if len(
            payload) >= 2 else None
        self.reason = payload[2:]

    def __repr__(self):
        return f"<close {self.code} {self.reason!r}>"


class DClient(FrameReader):
    """A connected socket after the handshake. `pmd` is the parsed
    Sec-WebSocket-Extensions answer (None: not negotiated)."""

    def __init__(self, sock, rest, headers):
        self.sock = sock
        self.buf = bytearray(rest)
        self.headers = headers
        self.ext = headers.get("sec-websocket-extensions")
        self.pmd = parse_extension(self.ext)
        p = self.pmd[1] if self.pmd else {}
        self.server_no_takeover = "server_no_context_takeover" in p
        self.client_no_takeover = "client_no_context_takeover" in p
        self.server_bits = int(p.get("server_max_window_bits") or 15)
        self.inflater = None
        self.deflater = None
        self.eof = False

    @classmethod
    def connect(cls, port, path, offer=None, timeout=DEFAULT_TIMEOUT):
        """Handshake, offering `offer` (a string, a list of header lines,
        or None for no Sec-WebSocket-Extensions)."""
        key = new_key()
        lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}",
                 "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if isinstance(offer, str):
            lines.append(f"Sec-WebSocket-Extensions: {offer}")
        elif offer:
            lines += [f"Sec-WebSocket-Extensions: {o}" for o in offer]
        sock = socket.create_connection((HOST, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw, rest = read_head(sock, timeout)
        head = raw[:-4].decode("latin-1")
        status = head.split("\r\n")[0]
        assert " 101 " in status + " ", head
        headers = {}
        for line in head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            k = k.strip().lower()
            assert k not in headers or k != "sec-websocket-extensions", \
                f"two extension headers: {head}"
            headers[k] = v.strip()
        assert headers.get("sec-websocket-accept") == accept_for(key), head
        c = cls(sock, rest, headers)
        c.head = head
        return c

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- sending --
    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(build_frame(opcode, payload, **kw))

    def compress(self, data):
        """Compresses one message as the agreed settings allow."""
        if self.client_no_takeover or self.deflater is None:
            self.deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        return deflate_raw(data, obj=self.deflater)

    def send_msg(self, data, opcode=OP_TEXT, compress=None, fragments=1):
        """Sends one message: compressed (RSV1 on the first frame only)
        when `compress` (default: when negotiated), split into
        `fragments` frames."""
        if isinstance(data, str):
            data = data.encode()
        if compress is None:
            compress = self.pmd is not None
        payload = self.compress(data) if compress else data
        n = max(1, fragments)
        size = -(-len(payload) // n) if payload else 0
        parts = [payload[i * size:(i + 1) * size] for i in range(n)] \
            if size else [b""] * n
        out = b""
        for i, part in enumerate(parts):
            out += build_frame(opcode if i == 0 else OP_CONT, part,
                               fin=i == n - 1, rsv1=compress and i == 0)
        self.sock.sendall(out)
        return payload

    def send_close(self, code=1000):
        self.send_frame(OP_CLOSE, struct.pack("!H", code))

    # -- receiving --
    def recv_frame(self, timeout=DEFAULT_TIMEOUT):
        """One server frame: (fin, rsv, opcode, payload); RSV1 is left to
        recv() (it is allowed on a compressed message's first frame)."""
        fin, rsv, op, payload = self.read_frame(time.monotonic() + timeout)
        assert rsv & 3 == 0, f"server frame with RSV2/RSV3: {rsv}"
        if op >= 8:
            assert fin and len(payload) <= 125 and rsv == 0, \
                "bad control frame"
        else:
            assert op in (0, 1, 2), f"opcode {op}"
        return fin, rsv, op, payload

    def inflate(self, payload):
        assert self.pmd is not None, "RSV1 without permessage-deflate"
        if self.server_no_takeover or self.inflater is None:
            self.inflater = zlib.decompressobj(-self.server_bits)
        return self.inflater.decompress(payload + TAIL)

    def recv(self, timeout=DEFAULT_TIMEOUT):
        """The next data Message (pings answered, pongs skipped) or a
        CloseFrame. Asserts RSV1 appears only on first frames and
        inflates with the agreed window."""
        deadline = time.monotonic() + timeout
        frames = []
        while True:
            fin, rsv, op, payload = self.recv_frame(
                max(0.0, deadline - time.monotonic()))
            if op == OP_PING:
                self.send_frame(OP_PONG, payload)
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                assert not frames, "close inside a message"
                return CloseFrame(payload)
            if frames:
                assert op == OP_CONT, "data frame inside a message"
                assert not rsv & 4, "RSV1 on a continuation frame"
            else:
                assert op != OP_CONT, "stray continuation"
            frames.append((fin, rsv, op, payload))
            if fin:
                break
        data = b"".join(f[3] for f in frames)
        if frames[0][1] & 4:
            data = self.inflate(data)
        m = Message(frames[0][2], data, frames)
        if m.opcode == OP_TEXT:
            data.decode("utf-8")  # must be valid
        return m

    def recv_msg(self, timeout=DEFAULT_TIMEOUT):
        m = self.recv(timeout)
        assert isinstance(m, Message), f"expected a message, got {m}"
        return m

    def expect_close(self, code, timeout=DEFAULT_TIMEOUT):
        """Reads until the server's close frame; asserts its code."""
        deadline = time.monotonic() + timeout
        before = []
        while True:
            try:
                m = self.recv(max(0.0, deadline - time.monotonic()))
            except Closed:
                raise Closed(f"TCP closed without a close frame (expected "
                             f"{code}); before: {before}")
            if isinstance(m, CloseFrame):
                assert m.code == code, \
                    f"expected close {code}, got {m} after {before}"
                return m
            before.append(m)

    def echo(self, data, opcode=OP_TEXT, compress=None, fragments=1):
        if isinstance(data, str):
            data = data.encode()
        self.send_msg(data, opcode, compress, fragments)
        m = self.recv_msg()
        assert m.opcode == opcode and m.data == data, \
            f"echo mismatch: sent {len(data)} bytes op {opcode}, got {m}"
        return m

    def wait_eof(self, timeout=DEFAULT_TIMEOUT):
        if self.eof:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
        return False
