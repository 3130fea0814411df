"""Every example's HOST beyond addresses (examples/common.h, the hosts of
tl_app_listen): a unix socket (HOST=unix:/path, served to curl
--unix-socket, the file removed at stop) and systemd socket activation
(LISTEN_FDS for the example's pid makes the host "systemd" when HOST is
unset). Each example whose binary was given is checked."""
import os
import re
import socket
import subprocess
import tempfile

import pytest

from conftest import EXAMPLES, EXAMPLE_ENV, example_bin
from talon_server import TalonServer, activation_prefix, skip_if_wrapped


@pytest.fixture(params=EXAMPLES)
def example(request, pytestconfig):
    return request.param, os.path.abspath(
        example_bin(pytestconfig, request.param))


def status_over(args):
    """The status of GET / with curl ARGS (a unix socket or a URL)."""
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", os.devnull,
                        "-w", "%{http_code}", *args],
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


def test_unix_socket_host(example, tmp_path):
    name, path = example
    with tempfile.TemporaryDirectory(prefix="tl-ex-") as d:
        sock = os.path.join(d, f"{name}.sock")
        s = TalonServer([path, "0"], name=name, cwd=str(tmp_path),
                        env={"HOST": "unix:" + sock,
                             "UPLOAD_DIR": str(tmp_path / "up")},
                        drop_env=EXAMPLE_ENV, tmp_prefix=f"talon-ex-{name}-",
                        stop_timeout=15.0)
        # The line names the socket and how to reach it.
        s.listen_re = re.compile(
            r"listening on (?P<host>unix:\S+) \(curl --unix-socket (\S+) "
            r"http://localhost/\)(?P<port>)")
        try:
            s.start()
            m = s.listen_re.search(s.stdout())
            assert m.group("host") == "unix:" + sock and m.group(2) == sock
            status = status_over(["--unix-socket", sock, "http://localhost/"])
            assert 200 <= status < 500, status
            s.stop()
            s.check_clean_exit()
            assert not os.path.exists(sock)
        finally:
            s.close()


@skip_if_wrapped("the activation wrapper is a Python program")
def test_socket_activation(example, tmp_path):
    name, path = example
    with socket.socket() as tcp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(16)
        port = tcp.getsockname()[1]
        s = TalonServer([*activation_prefix([tcp.fileno()]), path, "0"],
                        name=name, cwd=str(tmp_path),
                        env={"UPLOAD_DIR": str(tmp_path / "up")},
                        drop_env=EXAMPLE_ENV + ("HOST",),
                        pass_fds=(tcp.fileno(),),
                        tmp_prefix=f"talon-ex-{name}-", stop_timeout=15.0)
        s.listen_re = re.compile(
            r"listening on (?P<host>systemd) \(inherited sockets\)(?P<port>)")
        try:
            s.start()
            status = status_over([f"http://127.0.0.1:{port}/"])
            assert 200 <= status < 500, status
            s.stop()
            s.check_clean_exit()
        finally:
            s.close()
