"""The layering check (.ci/check-layers) passes on the tree and fails
when an edge is broken on purpose: a forbidden include, a call around the
headers, a circle inside a folder, a private header in middleware.

    python3 -m pytest tests/layering
"""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHECK = os.path.join(ROOT, ".ci", "check-layers")


def run(root):
    p = subprocess.run([sys.executable, CHECK, root], capture_output=True,
                       text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


@pytest.fixture
def tree(tmp_path):
    """A copy of src/, middleware/ and examples/ to break."""
    for d in ("src", "middleware", "examples"):
        shutil.copytree(os.path.join(ROOT, d), tmp_path / d)
    return tmp_path


def append(path, text):
    with open(path, "a") as f:
        f.write(text)


def test_the_tree_passes():
    rc, out = run(ROOT)
    assert rc == 0, out
    assert "layering: ok" in out


def test_the_copy_passes(tree):
    rc, out = run(str(tree))
    assert rc == 0, out


def test_http_including_ws_fails(tree):
    append(tree / "src/http/dispatch.c", '\n#include "ws/wsconn.h"\n')
    rc, out = run(str(tree))
    assert rc == 1, out
    assert "src/http/dispatch.c: includes ws/wsconn.h (http -> ws)" in out


def test_ws_calling_pubsub_around_the_headers_fails(tree):
    append(tree / "src/ws/ws.c",
           "\nvoid tl__pubsub_leave_all(tl_ws *ws);\n"
           "static void leave(tl_ws *ws) { tl__pubsub_leave_all(ws); }\n")
    rc, out = run(str(tree))
    assert rc == 1, out
    assert "src/ws/ws.c: uses tl__pubsub_leave_all, defined in pubsub" in out


def test_core_including_http_fails(tree):
    append(tree / "src/core/buf.c", '\n#include "http/http.h"\n')
    rc, out = run(str(tree))
    assert rc == 1, out
    assert "(core -> http)" in out


def test_a_circle_inside_a_folder_fails(tree):
    # response.c calling back into conn.c (conn.c calls response.c).
    append(tree / "src/http/conn.c",
           "\nvoid tl__hconn_poke(void);\nvoid tl__hconn_poke(void) {}\n")
    append(tree / "src/http/response.c",
           "\nvoid tl__hconn_poke(void);\n"
           "static void poke(void) { tl__hconn_poke(); }\n")
    rc, out = run(str(tree))
    assert rc == 1, out
    assert "circle of" in out and "src/http/conn.c" in out


def test_middleware_with_a_private_header_fails(tree):
    append(tree / "middleware/cors.c", '\n#include "http/http.h"\n')
    rc, out = run(str(tree))
    assert rc == 1, out
    assert "middleware/cors.c: includes private header http/http.h" in out


def test_http_calling_a_public_ws_function_fails(tree):
    append(tree / "src/http/dispatch.c",
           "\nstatic void echo(tl_ws *ws) { tl_ws_send_text(ws, \"x\"); }\n")
    rc, out = run(str(tree))
    assert rc == 1, out
    assert "src/http/dispatch.c: uses tl_ws_send_text, defined in ws" in out
