"""Shared test-server process handling for talon's pytest suites.

A talon test server runs as a subprocess with stdout and stderr captured
to files in a temp dir. start() waits (with a timeout) for its
"listening on http://HOST:PORT" line and reads the port from it. At
teardown the server gets SIGTERM; the caller waits for it (with a
timeout) and asserts exit code 0 and no sanitizer report in its stderr
(build with -DTALON_SANITIZE=ON; ASAN_OPTIONS gets detect_leaks=1 when
unset).

    s = TalonServer([binary, "0"], name="x").start()
    ... s.port ...
    finish(s)                      # alive?, SIGTERM, wait, exit 0, no report

Each suite's conftest.py subclasses TalonServer for its own helpers and
keeps its own fixture names.

With TALON_TEST_WRAPPER set (e.g. "valgrind --tool=memcheck
--error-exitcode=97 --leak-check=full"), every server command is
prefixed with it (shlex-split; "{tmpdir}" in it becomes the server's
temp dir). For valgrind, unless the wrapper names a --log-file, its log
goes to <tmpdir>/valgrind.<pid>; check_clean_exit() then also fails on
any error or definitely/indirectly lost bytes in that log, quoting it.
Start and stop timeouts are lengthened under a wrapper; a test that is
inherently timing-bound opts out with @skip_if_wrapped(reason).
"""
import glob
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time

import pytest

HOST = "127.0.0.1"
SANITIZER_MARKS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "LeakSanitizer",
    "runtime error",
    "UndefinedBehaviorSanitizer",
    "WARNING: ThreadSanitizer",
    "ERROR: ThreadSanitizer",
)
LISTEN_RE = re.compile(
    r"listening on http://(?P<host>[^\s:]+|\[[^\]]+\]):(?P<port>\d+)")
WRAPPER_ENV = "TALON_TEST_WRAPPER"


def wrapper():
    """The command prefix from TALON_TEST_WRAPPER (shlex-split), or []."""
    return shlex.split(os.environ.get(WRAPPER_ENV, ""))


def wrapped():
    """Whether the servers run under a TALON_TEST_WRAPPER command."""
    return bool(wrapper())


def skip_if_wrapped(reason):
    """Marks a test that cannot work under the wrapper's slowdown (or
    its changed process), with the reason shown in the skip."""
    return pytest.mark.skipif(wrapped(),
                              reason=f"under {WRAPPER_ENV}: {reason}")


# Under valgrind a server runs 20-50x slower: it needs far longer to
# start (JIT of libc and libuv) and to exit (leak check at exit).
START_TIMEOUT = 120.0 if wrapped() else 15.0
WRAPPED_STOP_TIMEOUT = 90.0
VALGRIND_LOG = "valgrind.%p"
VALGRIND_EXCERPT = 12000  # characters of a failing log quoted


def listen_re(host=None):
    """The 'listening on' regex; with `host`, only that host matches."""
    if host is None:
        return LISTEN_RE
    return re.compile(r"listening on http://(?P<host>%s):(?P<port>\d+)"
                      % re.escape(host))


def has_ipv6_loopback():
    """Whether this machine can bind ::1."""
    import socket
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


ACTIVATE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "activate.py")


def activation_prefix(fds, names=None, pid=None):
    """The command to put before a server's to start it as systemd's
    socket activation would, with the descriptors FDS (pass them with
    pass_fds) as 3, 4, ... (activate.py; Python, so not under a
    TALON_TEST_WRAPPER)."""
    import sys
    cmd = [sys.executable, ACTIVATE]
    if names is not None:
        cmd += ["--names", names]
    if pid is not None:
        cmd += ["--pid", str(pid)]
    return [*cmd, *(str(fd) for fd in fds), "--"]


def sanitizer_env(extra=None, drop=(), asan_extra=()):
    """os.environ without `drop`, with ASAN_OPTIONS getting detect_leaks=1
    (and each `asan_extra` "key=value" whose key is not set) and
    UBSAN_OPTIONS a default; then `extra` applied on top."""
    env = dict(os.environ)
    for k in drop:
        env.pop(k, None)
    asan = env.get("ASAN_OPTIONS", "")
    if "detect_leaks" not in asan:
        asan = (asan + ":" if asan else "") + "detect_leaks=1"
    for opt in asan_extra:
        if opt.split("=", 1)[0] not in asan:
            asan = (asan + ":" if asan else "") + opt
    env["ASAN_OPTIONS"] = asan
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    if extra:
        env.update(extra)
    return env


def binary_option(config, opt, flag=None):
    """The executable given with command-line option `opt` (fails the
    test if missing or not executable)."""
    flag = flag or "--" + opt.replace("_", "-")
    path = config.getoption(opt)
    if not path:
        pytest.fail(f"{flag} PATH is required")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{flag}: {path} is not an executable")
    return path


def _read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


class TalonServer:
    """A server subprocess; start() waits for its 'listening on' line.

    argv, env (extra variables over the sanitizer defaults), cwd and
    pass_fds go to the subprocess; drop_env names variables removed from
    the inherited environment, asan_extra adds ASAN_OPTIONS defaults.
    listen_host restricts the 'listening on' line to that host;
    expect_host accepts any line but asserts its host.
    stop_timeout is how long stop() waits after SIGTERM by default."""

    def __init__(self, argv, env=None, name="server", cwd=None, pass_fds=(),
                 tmp_prefix="talon-", drop_env=(), asan_extra=(),
                 listen_host=None, expect_host=None, stop_timeout=10.0,
                 out_name="stdout", err_name="stderr"):
        self.argv = list(argv)
        self.env = sanitizer_env(env, drop=drop_env, asan_extra=asan_extra)
        self.name = name
        self.cwd = cwd
        self.pass_fds = tuple(pass_fds)
        self.listen_re = listen_re(listen_host)
        self.expect_host = expect_host
        self.stop_timeout = stop_timeout
        self.host = HOST
        self.proc = None
        self.port = None
        self.returncode = None
        self.tmp = tempfile.TemporaryDirectory(prefix=tmp_prefix)
        self.out_path = os.path.join(self.tmp.name, out_name)
        self.err_path = os.path.join(self.tmp.name, err_name)
        self._out = self._err = None
        self.command = self._wrap(self.argv)

    def _wrap(self, argv):
        """argv prefixed with the TALON_TEST_WRAPPER command, if any."""
        prefix = [w.replace("{tmpdir}", self.tmp.name) for w in wrapper()]
        self.valgrind_log = None
        if prefix and os.path.basename(prefix[0]) == "valgrind":
            given = [w for w in prefix if w.startswith("--log-file=")]
            if given:
                log = given[-1].split("=", 1)[1]
            else:
                log = os.path.join(self.tmp.name, VALGRIND_LOG)
                prefix.insert(1, "--log-file=" + log)
            self.valgrind_log = log
        return prefix + argv

    # ---- start -------------------------------------------------------------
    def start(self, timeout=START_TIMEOUT):
        """Starts the process and waits up to `timeout` seconds for its
        'listening on' line; returns self (fails the test otherwise)."""
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(self.command, stdout=self._out,
                                     stderr=self._err, env=self.env,
                                     cwd=self.cwd, pass_fds=self.pass_fds,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.listen_re.search(self.stdout())
            if m:
                if self.expect_host is not None:
                    assert m.group("host") == self.expect_host, m.group(0)
                # An empty port group: a listener with no TCP port (a
                # unix socket, inherited sockets).
                self.port = int(m.group("port") or 0)
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        rc = self.proc.poll()
        if rc is None:
            self.proc.kill()
            self.proc.wait()
        logs = "".join(f"\n{os.path.basename(p)}:\n{_read(p)}"
                       for p in self.valgrind_logs())
        pytest.fail(f"{self.name} did not start (rc={rc}); stderr:\n"
                    f"{self.stderr()}\nstdout:\n{self.stdout()}{logs}")

    # ---- output ------------------------------------------------------------
    def stdout(self):
        return _read(self.out_path)

    def stderr(self):
        return _read(self.err_path)

    def wait_stdout(self, pattern, timeout=5.0):
        """Waits until stdout matches the regex `pattern`; returns the
        match (assertion failure after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.stdout())
            if m or time.monotonic() > deadline:
                assert m, f"{self.name}: {pattern!r} not in stdout:\n" \
                          f"{self.stdout()}"
                return m
            time.sleep(0.02)

    # ---- state -------------------------------------------------------------
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        """VmRSS of the server process in KiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def wait_stats(self, pred, timeout=10.0, what="condition"):
        """Polls self.stats() (a suite's subclass defines it, usually a GET
        of the server's /stats) until pred(stats) is true; returns the
        stats. Assertion failure after `timeout` s, quoting the last stats
        (without a bulky "log" entry)."""
        deadline = time.monotonic() + timeout
        st = self.stats()
        while not pred(st):
            if time.monotonic() > deadline:
                st.pop("log", None)
                raise AssertionError(f"/stats: {what} not reached within "
                                     f"{timeout}s: {st}")
            time.sleep(0.02)
            st = self.stats()
        return st

    def assert_alive(self, during="the tests"):
        assert self.alive(), \
            f"{self.name} died during {during} " \
            f"(rc={self.proc.returncode}); stderr:\n{self.stderr()}"

    # ---- stop and check ----------------------------------------------------
    def wait_exit(self, timeout=None):
        """Waits for the process to exit; returns its exit code (kills it
        and fails the test if it does not exit in time)."""
        if timeout is None:
            timeout = self.stop_timeout
        if wrapped():
            timeout = max(timeout, WRAPPED_STOP_TIMEOUT)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"{self.name} did not exit within {timeout}s; "
                        f"stderr:\n{self.stderr()}")
        return self.returncode

    def stop(self, timeout=None, sig=signal.SIGTERM):
        """Sends `sig` (if still running) and waits; returns the code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def valgrind_logs(self):
        """Paths of this server's valgrind logs: its own pid's (valgrind
        keeps the pid) and any of processes it forked."""
        if not self.valgrind_log or self.proc is None:
            return []
        pat = self.valgrind_log.replace("%%", "%")
        own = pat.replace("%p", str(self.proc.pid))
        pat = re.sub(r"%q\{[^}]*\}", "*", pat)
        own = re.sub(r"%q\{[^}]*\}", "*", own)
        if "%p" not in pat:
            return sorted(glob.glob(own))
        children = glob.glob(pat.replace("%p", "*"))
        parent = "Parent PID: %d\n" % self.proc.pid
        return sorted(set(glob.glob(own)) |
                      {p for p in children if parent in _read(p)})

    def check_valgrind(self):
        """Fails with the log if a valgrind log of this server reports
        errors or definitely/indirectly lost bytes, or has no error
        summary (valgrind did not get to the end: killed or crashed)."""
        logs = self.valgrind_logs()
        if self.valgrind_log and self.proc is not None and not logs:
            pytest.fail(f"{self.name}: no valgrind log "
                        f"{self.valgrind_log} (pid {self.proc.pid})")
        for path in logs:
            log = _read(path)
            problems = []
            m = re.search(r"ERROR SUMMARY: ([\d,]+) errors", log)
            if not m:
                problems.append("no ERROR SUMMARY (did not exit normally)")
            elif int(m.group(1).replace(",", "")) != 0:
                problems.append(f"{m.group(1)} errors")
            for kind in ("definitely", "indirectly"):
                m = re.search(kind + r" lost: ([\d,]+) bytes", log)
                if m and int(m.group(1).replace(",", "")) != 0:
                    problems.append(f"{m.group(1)} bytes {kind} lost")
            if problems:
                if len(log) > VALGRIND_EXCERPT:
                    log = log[:VALGRIND_EXCERPT] + "\n[... log cut ...]"
                pytest.fail(f"{self.name}: valgrind: {', '.join(problems)} "
                            f"({os.path.basename(path)}):\n{log}")

    def check_clean_exit(self, rc=None):
        """Asserts no sanitizer report in stderr and exit code 0 (`rc`,
        or the code stop()/wait_exit() saw); under valgrind also a clean
        valgrind log."""
        if rc is None:
            rc = self.returncode
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            assert mark not in err, \
                f"{self.name}: sanitizer report in stderr:\n{err}"
        self.check_valgrind()
        assert rc == 0, f"{self.name} exited with {rc}; stderr:\n{err}"

    def close(self):
        """Kills the process if still running, closes and removes the
        captured output."""
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        for f in (self._out, self._err):
            if f:
                f.close()
        self.tmp.cleanup()


def finish(s, check_alive=True, during="the tests", check=None):
    """Fixture teardown for one server: assert it is still running
    (check_alive), run `check(s)` if given, SIGTERM and wait, assert a
    clean exit; always close it."""
    try:
        if check_alive:
            s.assert_alive(during)
        if check is not None:
            check(s)
        s.stop()
        s.check_clean_exit()
    finally:
        s.close()


def finish_all(servers):
    """Fixture teardown for a factory's servers: each one SIGTERM, wait,
    clean exit; always close them all."""
    try:
        for s in servers:
            s.stop()
            s.check_clean_exit()
    finally:
        for s in servers:
            s.close()
