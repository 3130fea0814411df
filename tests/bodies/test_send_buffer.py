"""tl_res_send_buffer: a caller-owned body goes out without a copy, and
its free callback runs exactly once, also when the client vanishes. The
server exits 3 at the end if any buffer given was not freed, and ASan
(in the sanitizer build) reports a double free or a leak."""
import gzip
import zlib

from conftest import connect, get_json, read_response, wait_for

MiB = 1 << 20


def pattern(n):
    unit = bytes(range(ord("a"), ord("a") + 26))
    return (unit * (n // 26 + 1))[:n]


def test_large_body_arrives_whole_and_is_freed(server):
    n = 64 * MiB + 3
    with connect(server.port) as s:
        s.sendall(b"GET /buf?size=%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
        st, h, body, _ = read_response(s, timeout=60)
    assert st == 200 and int(h["content-length"]) == n
    assert zlib.crc32(body) == zlib.crc32(pattern(n))
    assert wait_for(lambda: get_json(server.port, "/bufstats")
                    ["outstanding"] == 0)


def test_empty_head_and_pipelined(server):
    """An empty body and a HEAD free at once; two pipelined buffers in one
    loop turn keep their order with the heads around them."""
    before = get_json(server.port, "/bufstats")
    with connect(server.port) as s:
        s.sendall(b"GET /buf?size=0 HTTP/1.1\r\nHost: t\r\n\r\n")
        st, h, body, _ = read_response(s)
        assert st == 200 and body == b"" and h["content-length"] == "0"
        s.sendall(b"HEAD /buf?size=1000 HTTP/1.1\r\nHost: t\r\n\r\n")
        s.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200")
        assert b"content-length: 1000" in head.lower()
        assert head.endswith(b"\r\n\r\n")  # no body after a HEAD answer
        s.sendall(b"GET /buf?size=300000 HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /buf?size=7 HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /buf?size=200000 HTTP/1.1\r\nHost: t\r\n\r\n")
        got = []
        rest = b""
        for want in (300000, 7, 200000):
            if rest:
                # read_response reads from the socket; feed leftovers first
                class Pre:
                    def __init__(self, data, sock):
                        self.data, self.sock = data, sock

                    def settimeout(self, t):
                        self.sock.settimeout(t)

                    def recv(self, n):
                        if self.data:
                            d, self.data = self.data[:n], self.data[n:]
                            return d
                        return self.sock.recv(n)
                src = Pre(rest, s)
            else:
                src = s
            st, h, body, rest = read_response(src)
            got.append(body)
            assert st == 200 and body == pattern(want)
    after = get_json(server.port, "/bufstats")
    assert after["given"] - before["given"] == 5
    assert wait_for(lambda: get_json(server.port, "/bufstats")
                    ["outstanding"] == 0)


def test_compressed_response_copies_and_frees_at_once(server):
    n = 500000
    with connect(server.port) as s:
        s.sendall(b"GET /bufgz?size=%d HTTP/1.1\r\nHost: t\r\n"
                  b"Accept-Encoding: gzip\r\n\r\n" % n)
        st, h, body, _ = read_response(s)
    assert st == 200 and h.get("content-encoding") == "gzip"
    assert gzip.decompress(body) == pattern(n)
    assert get_json(server.port, "/bufstats")["outstanding"] == 0


def test_client_vanishing_mid_body_frees_the_buffer(server):
    """The client takes 1 MiB of 200 MiB and resets the connection: the
    buffer is freed when the connection closes, not leaked."""
    before = get_json(server.port, "/bufstats")
    s = connect(server.port)
    s.sendall(b"GET /buf?size=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (200 * MiB))
    got = 0
    while got < MiB:
        got += len(s.recv(65536))
    s.close()
    assert wait_for(lambda: get_json(server.port, "/bufstats")["freed"]
                    == before["given"] + 1)
    assert get_json(server.port, "/bufstats")["outstanding"] == 0


def test_many_connections_share_no_copies(server):
    """Ten clients fetch 20 MiB each at once, reading slowly at first: all
    get the whole body; the free callbacks all run."""
    socks = [connect(server.port) for _ in range(10)]
    for s in socks:
        s.sendall(b"GET /buf?size=%d HTTP/1.1\r\nHost: t\r\n\r\n"
                  % (20 * MiB))
    want = zlib.crc32(pattern(20 * MiB))
    for s in socks:
        st, _, body, _ = read_response(s, timeout=60)
        assert st == 200 and zlib.crc32(body) == want
        s.close()
    assert wait_for(lambda: get_json(server.port, "/bufstats")
                    ["outstanding"] == 0)
