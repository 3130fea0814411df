"""chat: server-side sessions (logout and a new sign-in revoke the old
cookie and close its sockets), the per-session socket cap, and rooms that
one client's many sockets cannot use up for everyone else; with one worker
and with 4 (WORKERS=4, more than this machine's cores), where rooms,
history, member counts and sign-outs must span the workers. The page
itself is tested in a browser by tests/browser."""
import asyncio
import json
import re
import time

import pytest
import websockets
import websockets.exceptions

from conftest import HOST, module_example, request
from talon_server import wrapped

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PER_SESSION = 16     # MAX_SOCKETS_PER_SESSION in examples/chat/main.c
IDLE_ROOMS = 256     # MAX_IDLE_ROOMS
SIGNED_OUT = 4001    # the close code of a socket whose session ended
# How long the server may take to run the close handler of a socket the
# client has closed (far longer under valgrind, TALON_TEST_WRAPPER).
SETTLE = 30.0 if wrapped() else 5.0


@pytest.fixture(scope="module", params=[1, 4], ids=["1worker", "4workers"])
def chat(pytestconfig, request):
    yield from module_example(pytestconfig, "chat",
                              env={"WORKERS": str(request.param)})


def login(port, name, room="lobby", cookie=None):
    headers = dict(FORM)
    if cookie:
        headers["Cookie"] = cookie
    return request(port, "POST", "/login", headers, f"name={name}&room={room}")


def sid_cookie(r):
    """The sid=... pair of a response's Set-Cookie and the whole header,
    or (None, None)."""
    for v in r.header_all("Set-Cookie"):
        m = re.match(r"(sid=[^;]*)", v)
        if m:
            return m.group(1), v
    return None, None


def signed_in(port, name):
    r = login(port, name)
    assert r.status == 303, r
    cookie, _ = sid_cookie(r)
    assert cookie, r
    return cookie


def me(port, cookie=None):
    r = request(port, "GET", "/api/me", {"Cookie": cookie} if cookie else {})
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/json"
    return r.json()["name"]


def url(chat, room):
    return f"ws://{HOST}:{chat.port}/chat/{room}"


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def upgrade_status(chat, room, cookie):
    """101 and the open socket (its welcome read), or the refusal's status
    and None."""
    try:
        ws = await websockets.connect(url(chat, room),
                                      extra_headers={"Cookie": cookie})
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code, None
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome" and welcome["room"] == room
    return 101, ws


async def open_socket(chat, room, cookie):
    status, ws = await upgrade_status(chat, room, cookie)
    assert status == 101, f"/chat/{room}: {status}"
    return ws


async def close_all(sockets):
    await asyncio.gather(*(ws.close() for ws in sockets))


async def refused_body(chat, room, cookie):
    """The status and body of a refused upgrade, over a plain socket."""
    reader, writer = await asyncio.open_connection(HOST, chat.port)
    writer.write((f"GET /chat/{room} HTTP/1.1\r\nHost: {HOST}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Version: 13\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  f"Cookie: {cookie}\r\n\r\n").encode())
    data = await reader.read()  # the refusal closes the connection
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


# ---- sessions ---------------------------------------------------------------

def test_signed_out_me_is_an_answer_not_an_error(chat):
    # The page asks on every visit; a 4xx there would be a console error.
    r = request(chat.port, "GET", "/api/me")
    assert r.status == 200 and r.json() == {"name": None}
    assert r.header("Cache-Control") == "no-store"
    assert sid_cookie(r) == (None, None)  # asking creates no session
    assert me(chat.port, "sid=forged") is None


def test_login_sets_a_server_side_session(chat):
    r = login(chat.port, "alice")
    assert r.status == 303 and r.header("Location") == "/?room=lobby"
    cookie, attrs = sid_cookie(r)
    # The cookie holds a random id (signed), not the name.
    assert re.fullmatch(r"sid=[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{43}", cookie)
    assert "alice" not in attrs
    assert "HttpOnly" in attrs and "SameSite=Lax" in attrs
    assert "Max-Age=604800" in attrs
    assert me(chat.port, cookie) == "alice"


def test_logout_revokes_the_cookie_and_closes_its_sockets(chat):
    cookie = signed_in(chat.port, "carol")
    other = signed_in(chat.port, "dan")

    async def scenario():
        socks = [await open_socket(chat, room, cookie)
                 for room in ("rv-a", "rv-b")]
        bystander = await open_socket(chat, "rv-a", other)
        r = request(chat.port, "GET", "/logout", {"Cookie": cookie})
        assert r.status == 303 and r.header("Location") == "/"
        cleared, attrs = sid_cookie(r)
        assert cleared == "sid=" and "Max-Age=0" in attrs
        # Both of carol's sockets are closed by the server, with 4001.
        for ws in socks:
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                while True:
                    await ws.recv()
            assert ws.close_code == SIGNED_OUT
            assert ws.close_reason == "signed out"
        # A copy of the old cookie opens nothing any more.
        assert (await upgrade_status(chat, "rv-a", cookie))[0] == 401
        # Another session is untouched.
        await bystander.ping()
        assert bystander.open
        await bystander.close()
    run(scenario())
    assert me(chat.port, cookie) is None
    assert me(chat.port, other) == "dan"


def test_signing_in_again_replaces_the_session(chat):
    first = signed_in(chat.port, "erin")

    async def scenario():
        ws = await open_socket(chat, "replace", first)
        r = login(chat.port, "erin2", cookie=first)
        second, _ = sid_cookie(r)
        assert second and second != first
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            while True:
                await ws.recv()
        assert ws.close_code == SIGNED_OUT
        assert (await upgrade_status(chat, "replace", first))[0] == 401
        ws2 = await open_socket(chat, "replace", second)
        await ws2.close()
        return second
    second = run(scenario())
    assert me(chat.port, first) is None
    assert me(chat.port, second) == "erin2"


# ---- limits -------------------------------------------------------------------

def test_per_session_cap_refuses_that_session_only(chat):
    greedy = signed_in(chat.port, "greedy")
    other = signed_in(chat.port, "other")

    async def scenario():
        socks = [await open_socket(chat, f"cap-{i}", greedy)
                 for i in range(PER_SESSION)]
        # The 17th socket of that session: 429, whatever the room.
        status, body = await refused_body(chat, "cap-new", greedy)
        assert status == 429
        assert "at most 16 rooms" in body
        assert (await refused_body(chat, "cap-0", greedy))[0] == 429
        # Anyone else: a new room and one of greedy's rooms both open.
        for room in ("cap-new", "cap-0"):
            ws = await open_socket(chat, room, other)
            await ws.close()
        # A socket closed gives its place back.
        await socks.pop().close()
        deadline = time.monotonic() + SETTLE
        while True:
            status, ws = await upgrade_status(chat, "cap-again", greedy)
            if status == 101 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert status == 101
        socks.append(ws)
        await close_all(socks)
    run(scenario())


def test_rooms_held_by_some_do_not_block_a_new_one(chat):
    """More rooms in use than the 256 kept idle (the old global cap, which
    answered 503 to every new room once reached): a new user still gets a
    new room."""
    sessions = [signed_in(chat.port, f"holder{i}")
                for i in range(IDLE_ROOMS // PER_SESSION + 2)]
    newcomer = signed_in(chat.port, "newcomer")

    async def scenario():
        socks = []
        for s, cookie in enumerate(sessions):
            socks += await asyncio.gather(*(
                open_socket(chat, f"held-{s}-{i}", cookie)
                for i in range(PER_SESSION)))
        assert len(socks) > IDLE_ROOMS
        ws = await open_socket(chat, "fresh-room", newcomer)
        await ws.send("still room for me")
        while json.loads(await ws.recv()).get("text") != "still room for me":
            pass
        await ws.close()
        await close_all(socks)
    run(scenario(), timeout=120)


def test_idle_rooms_beyond_the_cap_are_forgotten(chat):
    """Memory stays bounded without a global cap: of the rooms nobody is
    in, only the 256 used last keep their history. Looking at a room's
    history uses it, so it is looked at once, after enough newer rooms:
    256 and two batches more, in case the server has not yet seen the
    last closes."""
    cookies = [signed_in(chat.port, f"visitor{i}") for i in range(4)]

    async def say(room, cookie, text):
        ws = await open_socket(chat, room, cookie)
        await ws.send(text)
        while json.loads(await ws.recv()).get("text") != text:
            pass
        await ws.close()

    async def history(room, cookie):
        ws = await websockets.connect(url(chat, room),
                                      extra_headers={"Cookie": cookie})
        welcome = json.loads(await ws.recv())
        await ws.close()
        return [m["text"] for m in welcome["history"]]

    async def scenario():
        await say("oldest", cookies[0], "from long ago")
        assert await history("oldest", cookies[0]) == ["from long ago"]
        # Newer rooms, each visited and left, in batches below the
        # per-session cap.
        names = [f"later-{i}" for i in range(IDLE_ROOMS + 16)]
        for i in range(0, len(names), 8):
            await asyncio.gather(*(
                say(n, cookies[j % len(cookies)], "x")
                for j, n in enumerate(names[i:i + 8])))
        assert await history("oldest", cookies[0]) == []
        assert await history(names[-1], cookies[1]) == ["x"]
    run(scenario(), timeout=120)


# ---- workers ------------------------------------------------------------------
# With 4 workers the kernel spreads connections over them by a hash of
# the client's address and port: of 8 or more sockets, the chance that
# all land on one worker is below 1e-4 (4 * 4^-8), so these tests see
# sockets on different workers (tests/mw_workers proves the spreading
# with a worker header). With 1 worker they must pass as well.

async def until(ws, pred, what, before=()):
    """Reads messages until pred(messages) holds for `before` and the
    messages read so far; returns the messages read."""
    got = []
    while True:
        try:
            m = json.loads(await asyncio.wait_for(ws.recv(), SETTLE))
        except asyncio.TimeoutError:
            raise AssertionError(f"{what}: not seen; got {got}")
        got.append(m)
        if pred(list(before) + got):
            return got


def newest_members(events):
    """The member count of the newest (highest id) join or leave."""
    ev = [m for m in events if m["type"] in ("join", "leave")]
    return max(ev, key=lambda m: m["id"])["members"]


def test_one_room_over_all_workers(chat):
    """8 members joined one after the other: each sees the others join
    with the right count, every message of every member exactly once
    (history and live together), and a leave with the count after it."""
    room = "xw-room"
    cookies = [signed_in(chat.port, f"m{i}") for i in range(8)]

    async def scenario():
        socks, seen = [], []
        for i, cookie in enumerate(cookies):
            ws = await open_socket(chat, room, cookie)
            socks.append(ws)
            seen.append([])
            # Everyone, this one included, sees its join with count i+1.
            for j, s in enumerate(socks):
                seen[j] += await until(
                    s, lambda ms: ms[-1]["type"] == "join" and
                    ms[-1]["name"] == f"m{i}", f"m{j} sees m{i} join")
                assert newest_members(seen[j]) == i + 1
        # Everyone talks at once: 5 messages each.
        await asyncio.gather(*(s.send(f"{i}:{k}") for i, s in enumerate(socks)
                               for k in range(5)))
        texts = {f"{i}:{k}" for i in range(8) for k in range(5)}
        for j, s in enumerate(socks):
            seen[j] += await until(
                s, lambda ms: {x["text"] for x in ms
                               if x["type"] == "message"} >= texts,
                f"m{j} sees every message", seen[j])
            msgs = [m for m in seen[j] if m["type"] == "message"]
            # Each delivered once live (no history here: the room was new).
            assert len(msgs) == 40 and len({m["id"] for m in msgs}) == 40
            assert {m["text"] for m in msgs} == texts
        # A newcomer gets the 40, in id order, in its welcome.
        ws = await websockets.connect(url(chat, room),
                                      extra_headers={"Cookie": cookies[0]})
        welcome = json.loads(await ws.recv())
        ids = [m["id"] for m in welcome["history"]]
        assert {m["text"] for m in welcome["history"]} == texts
        assert ids == sorted(ids)
        await ws.close()
        # One leaves: the others see the count drop to 7 (the newcomer's
        # join and leave came and went).
        await socks[3].close()
        for j, s in enumerate(socks):
            if j == 3:
                continue
            seen[j] += await until(
                s, lambda ms: ms[-1]["type"] == "leave" and
                ms[-1]["name"] == "m3", f"m{j} sees m3 leave")
            assert newest_members(seen[j]) == 7
        await close_all(socks)
    run(scenario())


def test_history_and_live_messages_meet_without_loss(chat):
    """Sockets join while others keep talking (48 messages, fewer than the
    50 a room keeps): what a joiner's welcome and its live messages hold
    together is every message, none of them twice live (one can be in
    both: the page drops it by id)."""
    room = "xw-flow"
    talkers = [signed_in(chat.port, f"t{i}") for i in range(4)]
    joiner = signed_in(chat.port, "joiner")

    async def scenario():
        socks = [await open_socket(chat, room, c) for c in talkers]
        sent = set()

        async def talk():
            for k in range(12):
                for i, s in enumerate(socks):
                    text = f"{i}:{k}"
                    sent.add(text)
                    await s.send(text)
                await asyncio.sleep(0.02)

        async def join_some():
            late = []
            for _ in range(6):
                await asyncio.sleep(0.03)
                ws = await websockets.connect(
                    url(chat, room), extra_headers={"Cookie": joiner})
                welcome = json.loads(await ws.recv())
                late.append((ws, [m for m in welcome["history"]]))
            return late
        _, late = await asyncio.gather(talk(), join_some())
        # The last message of each talker marks the end.
        last = {f"{i}:11" for i in range(4)}
        for ws, history in late:
            got = list(history)
            got += await until(
                ws, lambda ms: {x.get("text") for x in ms} >= last,
                "a late joiner sees the last messages", got)
            msgs = [m for m in got if m["type"] == "message"]
            live = msgs[len(history):]
            assert len({m["id"] for m in live}) == len(live), "live twice"
            # The room is new and holds fewer than 50 messages, so the
            # history and the live messages together are all of them.
            assert {m["text"] for m in msgs} == sent
            await ws.close()
        # The talkers got every message too (and a socket whose client
        # does not read cannot take its close quickly).
        for s in socks:
            got = await until(s, lambda ms: {x.get("text") for x in ms} >= sent,
                              "a talker sees every message")
            assert len([m for m in got if m["type"] == "message"]) == 48
        await close_all(socks)
    run(scenario())


def test_sign_out_closes_the_sockets_on_every_worker(chat):
    """12 sockets of one sign-in (on several workers with WORKERS=4): a
    logout through any worker closes all of them with 4001; another
    sign-in's sockets stay open."""
    cookie = signed_in(chat.port, "spread")
    other = signed_in(chat.port, "stays")

    async def scenario():
        socks = await asyncio.gather(*(open_socket(chat, f"so-{i}", cookie)
                                       for i in range(12)))
        bystanders = await asyncio.gather(*(open_socket(chat, f"so-{i}", other)
                                            for i in range(8)))
        r = request(chat.port, "GET", "/logout", {"Cookie": cookie})
        assert r.status == 303
        for ws in socks:
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), SETTLE)
            assert (ws.close_code, ws.close_reason) == (SIGNED_OUT,
                                                        "signed out")
        for ws in bystanders:
            await ws.ping()
            assert ws.open
        await close_all(bystanders)
    run(scenario())


def test_the_per_session_cap_holds_across_workers(chat):
    """24 upgrades of one sign-in at once, over the workers: at most 16
    sockets stay open (an upgrade over the cap is refused with 429, or,
    when two workers decided at the same moment, closed with 4029 right
    after opening)."""
    cookie = signed_in(chat.port, "racer")

    async def one(i):
        try:
            ws = await websockets.connect(url(chat, f"race-{i}"),
                                          extra_headers={"Cookie": cookie})
        except websockets.exceptions.InvalidStatusCode as e:
            assert e.status_code == 429
            return None
        try:
            # The welcome and its join, or the close (then no welcome).
            for _ in range(2):
                await asyncio.wait_for(ws.recv(), SETTLE)
        except websockets.exceptions.ConnectionClosed:
            assert (ws.close_code, ws.close_reason) == \
                (4029, "too many rooms open")
            return None
        return ws

    async def scenario():
        socks = [w for w in await asyncio.gather(*(one(i) for i in range(24)))
                 if w]
        assert len(socks) == PER_SESSION
        for ws in socks:
            await ws.ping()
        await close_all(socks)
    run(scenario())


# ---- metrics ----------------------------------------------------------------

def metrics(port):
    r = request(port, "GET", "/metrics")
    assert r.status == 200
    text = r.body.decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = int(value)
    return r, out


def test_metrics_count_the_chat(chat):
    r, before = metrics(chat.port)
    assert r.header("Content-Type").startswith("text/plain; version=0.0.4")
    cookie = signed_in(chat.port, "metrics-user")

    async def go():
        a = await open_socket(chat, "metrics-room", cookie)
        b = await open_socket(chat, "metrics-room", cookie)
        _, during = metrics(chat.port)
        await a.send("hello from a")
        got = json.loads(await b.recv())
        while got["type"] != "message":
            got = json.loads(await b.recv())
        await close_all([a, b])
        return during

    during = run(go())
    assert during["talon_websockets"] >= before["talon_websockets"] + 2
    deadline = time.monotonic() + SETTLE
    while True:
        _, after = metrics(chat.port)
        if after["talon_websockets"] == before["talon_websockets"]:
            break
        assert time.monotonic() < deadline, after
        time.sleep(0.05)
    assert after["talon_ws_messages_received_total"] >= \
        before["talon_ws_messages_received_total"] + 1
    assert after["talon_pubsub_publishes_total"] > \
        before["talon_pubsub_publishes_total"]
    assert after['talon_http_responses_total{class="1xx"}'] >= \
        before['talon_http_responses_total{class="1xx"}'] + 2  # the 101s
    assert after['talon_http_responses_total{class="2xx"}'] > \
        before['talon_http_responses_total{class="2xx"}']
    assert after["talon_bytes_received_total"] > \
        before["talon_bytes_received_total"]
