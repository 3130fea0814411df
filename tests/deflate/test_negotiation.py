"""permessage-deflate negotiation on the wire: the exact
Sec-WebSocket-Extensions answer of every route to raw offers, and to the
offers the python `websockets` client makes with each
ClientPerMessageDeflateFactory variant."""
import asyncio

import pytest
import websockets
from websockets.extensions.permessage_deflate import \
    ClientPerMessageDeflateFactory

from dclient import DClient
from pmdmodel import CNCT, PMD, ROUTES, SNCT, expected_response

ALL_ROUTES = sorted(ROUTES) + ["/plain"]


@pytest.mark.parametrize("route", ALL_ROUTES)
def test_plain_offer(srv, route):
    with DClient.connect(srv.port, route, PMD) as c:
        assert c.ext == expected_response(route), c.head
        c.echo("negotiated " + route)


@pytest.mark.parametrize("route", ALL_ROUTES)
def test_no_offer_no_extension(srv, route):
    with DClient.connect(srv.port, route, None) as c:
        assert c.ext is None, c.head
        m = c.echo("x" * 5000)
        assert not m.compressed


OFFERS = [
    # (offer, snct, cnct, smwb) -- the model's inputs for the first
    # acceptable offer; smwb None: not offered.
    (PMD + SNCT, True, False, None),
    (PMD + CNCT, False, True, None),
    (PMD + SNCT + CNCT, True, True, None),
    (PMD + "; client_max_window_bits", False, False, None),
    (PMD + "; client_max_window_bits=9", False, False, None),
    (PMD + "; server_max_window_bits=8", False, False, 8),
    (PMD + "; server_max_window_bits=9", False, False, 9),
    (PMD + "; server_max_window_bits=10", False, False, 10),
    (PMD + "; server_max_window_bits=12", False, False, 12),
    (PMD + "; server_max_window_bits=15", False, False, 15),
    (PMD + "; server_max_window_bits=\"11\"", False, False, 11),
    (PMD + "; server_max_window_bits=8, " + PMD + SNCT, True, False, None),
    (PMD + "; foo, " + PMD + CNCT, False, True, None),
    (PMD + SNCT + SNCT + ", " + PMD, False, False, None),
    ("x-webkit-deflate-frame, " + PMD + "; server_max_window_bits=13",
     False, False, 13),
    ('foo; a="b, permessage-deflate", ' + PMD + CNCT, False, True, None),
    (["foo", PMD + SNCT], True, False, None),  # two header lines
    (["x; y=\"1\"", PMD + "; server_max_window_bits=16", PMD], False, False,
     None),
]


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("offer,snct,cnct,smwb", OFFERS,
                         ids=[str(o[0]) for o in OFFERS])
def test_offer(srv, route, offer, snct, cnct, smwb):
    with DClient.connect(srv.port, route, offer) as c:
        assert c.ext == expected_response(route, snct, cnct, smwb), c.head
        # Compressed both ways with whatever was agreed.
        m = c.echo(("negotiated " * 100).encode())
        assert m.compressed == (c.pmd is not None)


@pytest.mark.parametrize("offer", [
    PMD + "; server_max_window_bits=7",
    PMD + "; server_max_window_bits=16",
    PMD + "; server_max_window_bits=010",
    PMD + "; server_max_window_bits=abc",
    PMD + "; server_max_window_bits=",
    PMD + "; server_max_window_bits",
    PMD + "; client_max_window_bits=7",
    PMD + "; client_max_window_bits=16",
    PMD + "; unknown",
    PMD + "; server_no_context_takeover=1",
    PMD + CNCT + CNCT,
    "x-webkit-deflate-frame",
    "permessage-deflatex",
    'foo; bar="x, permessage-deflate"',
    "",
])
def test_declined(srv, offer):
    with DClient.connect(srv.port, "/shared", offer) as c:
        assert c.ext is None, c.head
        m = c.echo("y" * 3000)
        assert not m.compressed


# -- the python websockets client's offers ---------------------------------

VARIANTS = [
    dict(),
    dict(server_no_context_takeover=True),
    dict(client_no_context_takeover=True),
    dict(server_no_context_takeover=True, client_no_context_takeover=True),
    dict(server_max_window_bits=9),
    dict(server_max_window_bits=10, client_max_window_bits=10),
    dict(server_max_window_bits=12),
    dict(server_max_window_bits=15),
    dict(client_max_window_bits=9),
    dict(client_max_window_bits=None),
    dict(client_max_window_bits=15, server_no_context_takeover=True),
]


def _variant_id(v):
    return ",".join(f"{k}={x}" for k, x in v.items()) or "default"


async def _ws_roundtrip(port, route, variant):
    factory = ClientPerMessageDeflateFactory(**variant)
    async with websockets.connect(f"ws://127.0.0.1:{port}{route}",
                                  extensions=[factory], compression=None,
                                  max_size=None) as ws:
        ext = ws.response_headers.get("Sec-WebSocket-Extensions")
        msgs = ["hi", "é" * 300, ("context " * 2000),
                bytes(range(256)) * 50, b"", "",
                ("context " * 2000)]
        for i in range(3):
            for m in msgs:
                await ws.send(m)
                got = await ws.recv()
                assert got == m, (route, variant, len(m))
        return ext, [e.name for e in ws.extensions]


@pytest.mark.parametrize("route", ["/shared", "/dedicated", "/small-window",
                                   "/comp-only", "/threshold0", "/plain"])
@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
def test_websockets_variants(srv, route, variant):
    ext, names = asyncio.run(_ws_roundtrip(srv.port, route, variant))
    smwb = variant.get("server_max_window_bits")
    want = expected_response(route,
                             variant.get("server_no_context_takeover", False),
                             variant.get("client_no_context_takeover", False),
                             smwb)
    assert ext == want
    assert names == ([PMD] if want else [])
