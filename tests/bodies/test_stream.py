"""Streamed request bodies: a route with stream_body gets its body as it
arrives (tl_req_body_stream), at bounded memory, with backpressure; limits,
timeouts and vanishing clients end the stream and leave nothing behind."""
import json
import os
import random
import subprocess
import threading
import time
import zlib

from conftest import connect, get_json, read_response, wait_for

MiB = 1 << 20


def crc_hex(data_iter):
    c = 0
    n = 0
    for b in data_iter:
        c = zlib.crc32(b, c)
        n += len(b)
    return n, "%08x" % c


def blocks(total, seed=1, size=MiB):
    """`total` bytes of pseudo-random data in blocks (the same each time for
    a seed), cheap to make: a few random blocks, each used many times at
    shifting offsets."""
    rnd = random.Random(seed)
    base = bytes(rnd.getrandbits(8) for _ in range(64 * 1024)) * 17
    sent = 0
    i = 0
    while sent < total:
        n = min(size, total - sent)
        off = (i * 7919) % (64 * 1024)
        yield (base[off:] + base)[:n]
        sent += n
        i += 1


def post_stream(port, path, total, chunked=False, headers=(), seed=1,
                during=None):
    """Sends a body of `total` bytes in 1 MiB writes; `during(sent)` is
    called after each. Returns (status, headers, body)."""
    with connect(port) as s:
        head = [f"POST {path} HTTP/1.1", "Host: t",
                "Content-Type: application/octet-stream"]
        head += list(headers)
        head.append("Transfer-Encoding: chunked" if chunked
                    else f"Content-Length: {total}")
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        for b in blocks(total, seed):
            if chunked:
                s.sendall(b"%x\r\n" % len(b) + b + b"\r\n")
            else:
                s.sendall(b)
            sent += len(b)
            if during:
                during(sent)
        if chunked:
            s.sendall(b"0\r\n\r\n")
        st, h, body, _ = read_response(s, timeout=120)
        return st, h, body


def test_200mb_upload_streams_to_disk_at_bounded_memory(server, upload_dir):
    """curl uploads 200 MiB; the server writes it to a file as it arrives.
    Its resident memory, sampled throughout, stays within a few MiB of
    where it started: the body is never held."""
    total = 200 * MiB
    src = os.path.join(upload_dir, "..", os.path.basename(upload_dir) + ".src")
    with open(src, "wb") as f:
        for b in blocks(total, seed=7):
            f.write(b)
    try:
        _, want = crc_hex(blocks(total, seed=7))
        base = server.rss_kib()
        peak = [base]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], server.rss_kib())
                time.sleep(0.01)

        t = threading.Thread(target=sample)
        t.start()
        try:
            out = subprocess.run(
                ["curl", "-sS", "--max-time", "300", "-H",
                 "Content-Type: application/octet-stream", "--data-binary",
                 "@" + src, f"http://127.0.0.1:{server.port}/upload"],
                capture_output=True, check=True).stdout
        finally:
            done.set()
            t.join()
        o = json.loads(out)
        assert o["bytes"] == total and o["hash"] == want
        assert o["chunks"] > 100  # delivered as it came, not at once
        grown_mib = (peak[0] - base) / 1024
        print(f"RSS {base} KiB, peak {peak[0]} KiB")
        # 200 MiB went through; the server grew by a few MiB at most
        # (measured: about 1; ASan's allocator caches keep a little more).
        assert grown_mib < 24, f"RSS grew by {grown_mib:.1f} MiB"
    finally:
        os.unlink(src)


def test_chunked_upload_with_odd_chunk_sizes(server):
    """A chunked body in chunks of every size, split across writes at odd
    places, arrives de-chunked and whole."""
    rnd = random.Random(3)
    data = bytes(rnd.getrandbits(8) for _ in range(300000))
    pieces = []
    i = 0
    while i < len(data):
        n = rnd.choice([1, 2, 7, 100, 4096, 65536, 70000])
        pieces.append(data[i:i + n])
        i += n
    wire = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces)
    wire += b"0\r\n\r\n"
    with connect(server.port) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        j = 0
        while j < len(wire):
            n = rnd.choice([1, 3, 500, 9000, 70000])
            s.sendall(wire[j:j + n])
            j += n
        st, _, body, _ = read_response(s)
    o = json.loads(body)
    assert st == 200
    assert o["bytes"] == len(data) and o["hash"] == "%08x" % zlib.crc32(data)


def test_paused_reader_gets_everything_and_is_backpressured(server):
    """/upload-async pauses on every chunk and resumes from a timer: all
    bytes arrive, one pause per chunk, and the socket is not read while
    paused (the client's send blocks at some point)."""
    total = 32 * MiB
    _, want = crc_hex(blocks(total, seed=5))
    st, _, body = post_stream(server.port, "/upload-async", total, seed=5)
    o = json.loads(body)
    assert st == 200 and o["bytes"] == total and o["hash"] == want
    assert o["pauses"] == o["chunks"] >= 2


def test_no_reader_yet_loses_nothing(server):
    """/gate decides after 50 ms (TL_PENDING) before the handler sets its
    reader: the body that arrived meanwhile is held, not lost."""
    total = 8 * MiB
    _, want = crc_hex(blocks(total, seed=9))
    st, _, body = post_stream(server.port, "/gate", total, seed=9)
    o = json.loads(body)
    assert st == 200 and o["bytes"] == total and o["hash"] == want


def test_pause_stops_reading_until_resume(server):
    """/hold pauses on its first chunk. The client pushes as much as the
    socket takes: the kernel's buffers fill and its sends block, far short
    of the 100 MiB body, and the reader has still seen one chunk only. GET
    /release resumes it; then everything arrives."""
    total = 100 * MiB
    s = connect(server.port)
    s.sendall(b"POST /hold HTTP/1.1\r\nHost: t\r\nContent-Length: %d"
              b"\r\n\r\n" % total)
    data = b"".join(blocks(total, seed=13))
    _, want = crc_hex([data])
    s.setblocking(False)
    pushed = 0
    stalled_since = None
    while stalled_since is None or time.monotonic() - stalled_since < 0.5:
        try:
            n = s.send(data[pushed:pushed + MiB])
            pushed += n
            stalled_since = None
        except BlockingIOError:
            if stalled_since is None:
                stalled_since = time.monotonic()
            time.sleep(0.01)
    assert wait_for(lambda: get_json(server.port, "/held") is True)
    assert pushed < 32 * MiB, pushed  # socket buffers, not the body
    got = get_json(server.port, "/release")["bytes"]
    assert 0 < got <= 256 * 1024  # one read's worth while paused
    s.setblocking(True)
    s.sendall(data[pushed:])
    st, _, body, _ = read_response(s, timeout=60)
    s.close()
    o = json.loads(body)
    assert st == 200 and o["bytes"] == total and o["hash"] == want


def test_keep_alive_and_pipelining_after_a_streamed_body(server):
    """A streamed request followed, in the same write, by another: both
    are answered, in order, on one connection."""
    body = b"x" * 5000
    with connect(server.port) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5000"
                  b"\r\n\r\n" + body +
                  b"GET /streams HTTP/1.1\r\nHost: t\r\n\r\n")
        st, h, b1, rest = read_response(s)
        assert st == 200 and json.loads(b1)["bytes"] == 5000
        assert h.get("connection") != "close"
        # The second response may already be in `rest`.
        s2 = rest
        while b"\r\n\r\n" not in s2:
            s2 += s.recv(65536)
        assert s2.startswith(b"HTTP/1.1 200")
        # And the connection still serves a third.
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 3"
                  b"\r\n\r\nabc")
        need = s2.partition(b"\r\n\r\n")[2]
        hdr = s2.partition(b"\r\n\r\n")[0].decode()
        clen = int([ln for ln in hdr.split("\r\n")
                    if ln.lower().startswith("content-length")][0]
                   .split(":")[1])
        while len(need) < clen:
            need += s.recv(65536)
        extra = need[clen:]
        if extra:
            # Should not happen: the third answer cannot come before its
            # request.
            raise AssertionError(extra)
        st, _, b3, _ = read_response(s)
        assert st == 200 and json.loads(b3)["bytes"] == 3


def test_declared_length_over_route_limit_is_413_before_the_chain(server):
    before = get_json(server.port, "/streams")
    with connect(server.port) as s:
        s.sendall(b"POST /limited HTTP/1.1\r\nHost: t\r\n"
                  b"Content-Length: 1001\r\n\r\n")
        st, h, _, _ = read_response(s)
    assert st == 413 and h.get("connection") == "close"
    after = get_json(server.port, "/streams")
    assert after["ended"] == before["ended"] and after["open"] == 0


def test_chunked_body_crossing_route_limit_ends_the_stream(server):
    """A chunked body has no declared length: it is streamed until it
    crosses 1000 bytes, then the reader hears TL_ETOOBIG and the client
    gets 413."""
    before = get_json(server.port, "/streams")["ended"]["TL_ETOOBIG"]
    with connect(server.port) as s:
        s.sendall(b"POST /limited HTTP/1.1\r\nHost: t\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n"
                  + b"200\r\n" + b"a" * 512 + b"\r\n")
        time.sleep(0.1)
        s.sendall(b"200\r\n" + b"b" * 512 + b"\r\n0\r\n\r\n")
        st, h, body, _ = read_response(s)
    assert st == 413 and h.get("connection") == "close"
    after = get_json(server.port, "/streams")
    assert after["ended"]["TL_ETOOBIG"] == before + 1 and after["open"] == 0


def test_route_limits_apply_to_buffered_routes(server):
    """max_body_bytes per route, below and above the app's 1 MiB."""
    def post(path, n):
        with connect(server.port) as s:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: "
                      f"{n}\r\n\r\n".encode() + b"z" * n)
            st, _, body, _ = read_response(s)
            return st, body
    assert post("/small", 100)[0] == 200
    assert post("/small", 101)[0] == 413
    st, body = post("/big", 3 * MiB)
    assert st == 200 and json.loads(body)["bytes"] == 3 * MiB
    assert post("/big", 4 * MiB + 1)[0] == 413
    assert post("/replay", 2 * MiB)[0] == 413  # the app's limit
    # Chunked, crossing the small limit without a declared length.
    with connect(server.port) as s:
        s.sendall(b"POST /small HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
                  b"chunked\r\n\r\n50\r\n" + b"q" * 80 + b"\r\n50\r\n"
                  + b"q" * 80 + b"\r\n0\r\n\r\n")
        assert read_response(s)[0] == 413


def test_reader_on_a_buffered_route_gets_the_body_as_one_piece(server):
    data = os.urandom(500000)
    with connect(server.port) as s:
        s.sendall(b"POST /replay HTTP/1.1\r\nHost: t\r\nContent-Length: %d"
                  b"\r\n\r\n" % len(data) + data)
        st, _, body, _ = read_response(s)
        o = json.loads(body)
        assert st == 200 and o["bytes"] == len(data) and o["chunks"] == 1
        assert o["hash"] == "%08x" % zlib.crc32(data)
        # No body: on_end(0) with nothing before it.
        s.sendall(b"POST /replay HTTP/1.1\r\nHost: t\r\nContent-Length: 0"
                  b"\r\n\r\n")
        st, _, body, _ = read_response(s)
        assert st == 200 and json.loads(body) == {
            "bytes": 0, "hash": "00000000", "chunks": 0}


def test_early_answer_closes_without_reading_the_body(server):
    """The handler answers 401 before reading: the client gets it (with
    Connection: close) while it is still sending, and the connection
    closes; nothing waits for the 50 MiB."""
    with connect(server.port) as s:
        s.sendall(b"POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: %d"
                  b"\r\n\r\n" % (50 * MiB) + b"a" * 100000)
        st, h, body, _ = read_response(s)
        assert st == 401 and body == b"no\n"
        assert h.get("connection") == "close"


def test_client_vanishing_mid_upload_leaves_nothing(server, upload_dir):
    """The client sends 5 of 100 MiB and disconnects: the reader hears
    TL_ECLOSED, and its file is gone (the autouse fixture checks the
    directory)."""
    before = get_json(server.port, "/streams")["ended"]["TL_ECLOSED"]
    s = connect(server.port)
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d"
              b"\r\n\r\n" % (100 * MiB))
    for b in blocks(5 * MiB):
        s.sendall(b)
    assert wait_for(lambda: os.listdir(upload_dir))  # a file is being written
    s.close()
    assert wait_for(lambda: get_json(server.port, "/streams")["ended"]
                    ["TL_ECLOSED"] == before + 1)
    assert get_json(server.port, "/streams")["open"] == 0


def test_stalled_upload_times_out_with_408(server):
    """header_timeout_ms (3 s here) bounds the time between two reads of
    a streamed body; the reader hears TL_EAGAIN."""
    before = get_json(server.port, "/streams")["ended"]["TL_EAGAIN"]
    with connect(server.port) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000"
                  b"\r\n\r\n" + b"x" * 10)
        st, h, _, _ = read_response(s, timeout=15)
    assert st == 408
    assert get_json(server.port, "/streams")["ended"]["TL_EAGAIN"] == \
        before + 1


def test_malformed_chunk_framing_mid_stream_is_400(server):
    before = get_json(server.port, "/streams")["ended"]["TL_EINVAL"]
    with connect(server.port) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
                  b"chunked\r\n\r\n5\r\nhelloXY0\r\n\r\n")
        st, _, _, _ = read_response(s)
    assert st == 400
    assert get_json(server.port, "/streams")["ended"]["TL_EINVAL"] == \
        before + 1


def multipart_body(boundary, parts):
    out = []
    for name, filename, data in parts:
        cd = f'Content-Disposition: form-data; name="{name}"'
        if filename:
            cd += f'; filename="{filename}"'
        out.append(f"--{boundary}\r\n{cd}\r\n\r\n".encode())
        out.append(data)
        out.append(b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return out


def test_multipart_parts_stream_to_their_files(server, upload_dir):
    """A 60 MiB multipart upload on a streamed route: each file part is
    written to its file as it arrives (the server's memory stays flat),
    and the handler sees the files complete."""
    big = b"".join(blocks(60 * MiB, seed=11))
    small = os.urandom(1000)
    parts = multipart_body("XyZ", [("note", None, b"hello"),
                                   ("big", "big.bin", big),
                                   ("small", "s.bin", small)])
    total = sum(len(p) for p in parts)
    base = server.rss_kib()
    peak = base
    with connect(server.port) as s:
        s.sendall(b"POST /mp HTTP/1.1\r\nHost: t\r\nContent-Type: "
                  b"multipart/form-data; boundary=XyZ\r\nContent-Length: %d"
                  b"\r\n\r\n" % total)
        for p in parts:
            for i in range(0, len(p), MiB):
                s.sendall(p[i:i + MiB])
                peak = max(peak, server.rss_kib())
        st, _, body, _ = read_response(s)
    o = json.loads(body)
    assert st == 200, body
    assert o["fields"] == 1
    f = {x["field"]: x for x in o["files"]}
    assert f["big"]["size"] == f["big"]["read"] == len(big)
    assert f["big"]["hash"] == "%08x" % zlib.crc32(big)
    assert f["small"]["size"] == 1000
    assert f["small"]["hash"] == "%08x" % zlib.crc32(small)
    assert (peak - base) / 1024 < 24


def test_multipart_client_vanishing_mid_file_leaves_no_temp_file(
        server, upload_dir):
    s = connect(server.port)
    s.sendall(b"POST /mp HTTP/1.1\r\nHost: t\r\nContent-Type: "
              b"multipart/form-data; boundary=B\r\nContent-Length: %d\r\n\r\n"
              % (50 * MiB) + b'--B\r\nContent-Disposition: form-data; '
              b'name="f"; filename="a.bin"\r\n\r\n')
    for b in blocks(4 * MiB):
        s.sendall(b)
    assert wait_for(lambda: any(n.startswith("talon-upload-")
                                for n in os.listdir(upload_dir)))
    s.close()
    # The autouse fixture waits for the directory to empty.


def test_multipart_error_mid_stream_answers_and_removes_files(server):
    body = (b'--B\r\nContent-Disposition: form-data; name="f"; '
            b'filename="a.bin"\r\n\r\n' + b"x" * 200000 +
            b"\r\n--B\r\nNo-Colon\r\n\r\nv\r\n--B--\r\n")
    with connect(server.port) as s:
        s.sendall(b"POST /mp HTTP/1.1\r\nHost: t\r\nContent-Type: "
                  b"multipart/form-data; boundary=B\r\nContent-Length: %d"
                  b"\r\n\r\n" % len(body) + body)
        st, _, b, _ = read_response(s)
    assert (st, b) == (400, b"multipart: bad part headers\n")


def test_client_vanishing_while_the_reader_is_paused(server, upload_dir):
    """/upload-async pauses on every chunk: a client that leaves meanwhile
    ends the stream with TL_ECLOSED (the pending write is cancelled) and
    leaves no file."""
    before = get_json(server.port, "/streams")["ended"]["TL_ECLOSED"]
    s = connect(server.port)
    s.sendall(b"POST /upload-async HTTP/1.1\r\nHost: t\r\nContent-Length: %d"
              b"\r\n\r\n" % (64 * MiB))
    for b in blocks(3 * MiB):
        s.sendall(b)
    s.close()
    assert wait_for(lambda: get_json(server.port, "/streams")["ended"]
                    ["TL_ECLOSED"] == before + 1)
    assert get_json(server.port, "/streams")["open"] == 0


def test_paused_at_the_last_piece_then_pipelined(server):
    """A small body arrives whole in one read, with the next request behind
    it; the reader pauses on it, so its end waits for the resume, and only
    then is the pipelined request answered, in order."""
    with connect(server.port) as s:
        s.sendall(b"POST /upload-async HTTP/1.1\r\nHost: t\r\n"
                  b"Content-Length: 3\r\n\r\nabc"
                  b"POST /upload-async HTTP/1.1\r\nHost: t\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n"
                  b"GET /bufstats HTTP/1.1\r\nHost: t\r\nConnection: close"
                  b"\r\n\r\n")
        s.settimeout(10)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    answers = data.split(b"HTTP/1.1 ")[1:]
    assert len(answers) == 3
    first = json.loads(answers[0].partition(b"\r\n\r\n")[2])
    second = json.loads(answers[1].partition(b"\r\n\r\n")[2])
    assert (first["bytes"], first["hash"]) == (3, "%08x" % zlib.crc32(b"abc"))
    assert (second["bytes"], second["hash"]) == (2, "%08x" % zlib.crc32(b"de"))
    assert first["pauses"] == 1 and second["pauses"] == 1
    assert b'"given"' in answers[2]
