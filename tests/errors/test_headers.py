"""Response headers can be replaced and removed, not only appended."""
import json

from conftest import get


def test_set_replaces_and_remove_removes(plain):
    r = get(plain.port, "/headers")
    assert r.status == 200
    info = json.loads(r.body)
    assert info == {"set": 0, "removed_b": 1, "removed_none": 0,
                    "bad": "TL_EINVAL", "ctype": 0, "get_a": "3",
                    "has_b": False}
    assert r.all("X-A") == ["3"]          # both earlier lines replaced
    assert r.all("X-B") == []
    assert r.all("X-C") == ["c"]          # others untouched
    assert r.all("Content-Type") == ["application/json"]
    assert r.all("Injected") == []
    assert r.all("X-Bad") == []


def test_removed_content_length_is_not_used(plain):
    r = get(plain.port, "/remove-clen")
    assert r.status == 200
    assert r.header("Content-Length") is None
    assert r.header("Transfer-Encoding") == "chunked"
    assert b"chunked" in r.body


def test_no_change_after_head_sent(plain):
    r = get(plain.port, "/late-header")
    assert r.header("X-Late") is None
    assert b"|TL_ESTATE|TL_ESTATE\r\n0\r\n\r\n" in r.body
