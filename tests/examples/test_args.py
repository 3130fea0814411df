"""Every example's command line (examples/common.h): a port is 0-65535 in
decimal digits, anything else is a usage error (exit 2, nothing bound),
and the "listening on" URL puts an IPv6 host in brackets.

Each example whose binary was given (--hello PATH ...) is checked; the
others are skipped."""
import os
import re
import socket
import subprocess

import pytest

from conftest import EXAMPLES, _env, example_bin
from talon_server import TalonServer, has_ipv6_loopback

BAD_PORTS = ["abc", "80x", "x80", "-1", "+80", " 80", "65536",
             "99999999999999999999", "0x50", "8.0", ""]


def run(path, args, env=None, timeout=10):
    """Runs the example; a usage error exits at once, so a timeout means
    it started serving."""
    return subprocess.run([path, *args], env=_env(env), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, text=True)


@pytest.fixture(params=EXAMPLES)
def example(request, pytestconfig):
    # Absolute: some tests run it from a temporary working directory.
    return request.param, os.path.abspath(
        example_bin(pytestconfig, request.param))


def test_bad_port_argument_is_a_usage_error(example):
    name, path = example
    for arg in BAD_PORTS:
        r = run(path, [arg])
        assert r.returncode == 2, (arg, r)
        assert f"{name}: {arg} is not a port (0-65535)" in r.stderr, (arg, r)
        assert r.stderr.count(f"usage: {name} [--workers N] [PORT]") == 1, r.stderr
        assert "listening" not in r.stdout, r.stdout


def test_bad_port_from_the_environment(example):
    name, path = example
    r = run(path, [], env={"PORT": "abc"})
    assert r.returncode == 2, r
    assert f"{name}: PORT=abc is not a port (0-65535)" in r.stderr, r


def test_too_many_arguments(example):
    name, path = example
    r = run(path, ["0", "1"])
    assert r.returncode == 2, r
    assert "too many arguments" in r.stderr and "usage:" in r.stderr


def test_help(example):
    name, path = example
    for flag in ("-h", "--help"):
        r = run(path, [flag])
        assert r.returncode == 0, r
        assert r.stdout.startswith(f"usage: {name} [--workers N] [PORT]\n"), r.stdout
        assert "HOST" in r.stdout and r.stderr == ""


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1)")
def test_ipv6_url_in_brackets(example, tmp_path):
    name, path = example
    # upload creates its folder; keep it out of the working directory.
    s = TalonServer([path, "0"], name=name, cwd=str(tmp_path),
                    env={"HOST": "::1", "UPLOAD_DIR": str(tmp_path / "up")},
                    drop_env=("PORT",), tmp_prefix=f"talon-ex-{name}-",
                    expect_host="[::1]", stop_timeout=15.0)
    try:
        s.start()
        m = re.search(r"listening on (http://\S+)", s.stdout())
        assert m.group(1) == f"http://[::1]:{s.port}"
        # The printed address is the one served.
        with socket.create_connection(("::1", s.port), timeout=5) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: [::1]\r\nConnection: close"
                      b"\r\n\r\n")
            assert c.recv(12).startswith(b"HTTP/1.1 ")
        s.stop()
        s.check_clean_exit()
    finally:
        s.close()


def test_port_from_argument_wins_over_environment(example, tmp_path):
    name, path = example
    s = TalonServer([path, "0"], name=name, cwd=str(tmp_path),
                    env={"HOST": "127.0.0.1", "PORT": "1",
                         "UPLOAD_DIR": str(tmp_path / "up")},
                    tmp_prefix=f"talon-ex-{name}-", expect_host="127.0.0.1",
                    stop_timeout=15.0)
    try:
        s.start()
        assert s.port != 1  # argv's 0 (any free port), not $PORT
        s.stop()
        s.check_clean_exit()
    finally:
        s.close()


BAD_WORKERS = ["abc", "-1", "257", "2x", "0x2", " 2"]


def test_bad_worker_count_is_a_usage_error(example):
    name, path = example
    for arg in BAD_WORKERS:
        r = run(path, ["--workers", arg, "0"])
        assert r.returncode == 2, (arg, r)
        assert "is not a worker count" in r.stderr, r.stderr
        r = run(path, ["0"], env={"WORKERS": arg})
        assert r.returncode == 2, (arg, r)
        assert f"WORKERS={arg} is not a worker count" in r.stderr, r.stderr
    r = run(path, ["--workers"])
    assert r.returncode == 2 and "--workers needs a number" in r.stderr, r


@pytest.mark.parametrize("how", ["flag", "env"])
def test_workers_serve_and_stop(example, tmp_path, how):
    """Four workers on one port: every connection is answered, and a stop
    ends them all (clean exit, nothing reported)."""
    name, path = example
    args = [path, "--workers", "4", "0"] if how == "flag" else [path, "0"]
    env = {"HOST": "127.0.0.1", "UPLOAD_DIR": str(tmp_path / "up")}
    if how == "env":
        env["WORKERS"] = "4"
    s = TalonServer(args, name=name, cwd=str(tmp_path), env=env,
                    drop_env=("PORT", "WORKERS"),
                    tmp_prefix=f"talon-ex-{name}-", expect_host="127.0.0.1",
                    stop_timeout=15.0)
    try:
        s.start()
        for _ in range(40):
            with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
                c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close"
                          b"\r\n\r\n")
                assert c.recv(12).startswith(b"HTTP/1.1 ")
        s.stop()
        s.check_clean_exit()
    finally:
        s.close()
