"""What deflate_test_server's routes are expected to answer to an offer:
a model of RFC 7692 negotiation under talon's policies (see
include/talon/ws.h: a shared compressor asks for
server_no_context_takeover, a shared decompressor for
client_no_context_takeover, a dedicated compressor with a small window
announces server_max_window_bits)."""

PMD = "permessage-deflate"
SNCT = "; server_no_context_takeover"
CNCT = "; client_no_context_takeover"

# route -> (dedicated compressor keeps context, window bits,
#           dedicated decompressor)
ROUTES = {
    "/shared": (False, 15, False),
    "/shared-comp": (False, 15, False),
    "/limited": (False, 15, False),
    "/sendex": (False, 15, False),
    "/pub-shared": (False, 15, False),
    "/dedicated": (True, 15, True),
    "/sendex-ded": (True, 15, True),
    "/pub-dedicated": (True, 15, True),
    "/threshold0": (True, 15, True),
    "/small-window": (True, 9, True),
    "/level9": (True, 15, True),
    "/comp-only": (True, 15, False),
}


def expected_response(route, snct=False, cnct=False, smwb=None):
    """The exact Sec-WebSocket-Extensions value for a single offer, or
    None when it must be declined."""
    if route not in ROUTES:
        return None
    ctx, bits, inflate_ctx = ROUTES[route]
    if smwb is not None and smwb < 9:
        return None
    s = snct or not ctx
    c = cnct or not inflate_ctx
    sb = min(smwb, bits) if smwb else bits
    out = PMD + (SNCT if s else "") + (CNCT if c else "")
    if smwb is not None or sb < 15:
        out += f"; server_max_window_bits={sb}"
    return out
