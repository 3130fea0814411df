"""Out of descriptors: a process at its RLIMIT_NOFILE cannot accept. The
server stops accepting until a later sweep tick instead of being told
"readable" again on every loop turn (a spin), keeps serving the
connections it has, and leaves the waiting clients in the kernel's
backlog (not accepted and dropped): once descriptors are available again
they are accepted and answered."""
import os
import select
import subprocess
import time

import pytest

from conftest import SLACK, after_attack, connect, http_get, ws_connect

HELD = 4  # WebSocket connections open before the limit drops


def fds_of(pid):
    return {int(n) for n in os.listdir(f"/proc/{pid}/fd")}


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def set_soft_nofile(pid, soft):
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={soft}:"],
                   check=True)


def test_accept_waits_for_descriptors(srv):
    if os.environ.get("TALON_TEST_WRAPPER"):
        pytest.skip("a wrapper (valgrind) keeps descriptors of its own")
    pid = srv.proc.pid
    held = [ws_connect(srv.port) for _ in range(HELD)]
    for i, c in enumerate(held):
        c.echo(f"held {i}".encode())
    with open(f"/proc/{pid}/limits") as f:
        line = next(x for x in f if x.startswith("Max open files"))
    orig_soft = int(line.split()[3])
    # A new descriptor takes the lowest free number and fails with EMFILE
    # when that is not below the limit: the limit at the lowest free
    # number leaves none.
    used = fds_of(pid)
    lowest_free = min(set(range(max(used) + 2)) - used)
    set_soft_nofile(pid, lowest_free)
    try:
        waiting = connect(srv.port)  # the kernel completes the handshake
        waiting.sendall(http_get("/hello"))
        cpu0 = cpu_seconds(pid)
        ready, _, _ = select.select([waiting], [], [], 1.5)
        cpu = cpu_seconds(pid) - cpu0
        assert not ready, waiting.recv(4096)
        # A spin on the readable listener would take most of the 1.5 s.
        assert cpu < 0.5, f"server used {cpu:.2f} s of CPU while out of fds"
        for i, c in enumerate(held):
            c.echo(f"still here {i}".encode())
    finally:
        set_soft_nofile(pid, orig_soft)
    # Accepting resumes at a sweep tick (every 250 ms here).
    waiting.settimeout(5 * SLACK)
    got = b""
    while b"hello\n" not in got:
        chunk = waiting.recv(4096)
        assert chunk, f"closed without an answer: {got!r}"
        got += chunk
    assert got.startswith(b"HTTP/1.1 200 "), got
    waiting.close()
    for c in held:
        c.close_handshake()
    after_attack(srv)
