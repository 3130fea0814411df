// Browser tests of the chat example (examples/chat): headless Chromium
// (Debian's /usr/bin/chromium, driven by playwright-core from
// tests/interop/node_modules) against one chat server on a free port.
//
// Run: CHAT_BIN=build/examples/chat node --test tests/browser/chat.test.mjs
// UPDATE_SCREENSHOT=1 also rewrites docs/chat.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, statSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, members, messageLine, send, WAIT } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
// The node packages live in tests/interop (installed by bash
// .ci/install-deps, through .ci/install-node-deps).
const require = createRequire(join(root, 'tests/interop/package.json'));
const WebSocket = require('ws');

// Resolved here: the server runs from a temporary working directory.
const CHAT_BIN = resolve(process.env.CHAT_BIN || join(root, 'build/examples/chat'));
const SCREENSHOT = join(root, 'docs/chat.png');
const T = { timeout: 90_000 };
const ROOM = 'lobby';
const XSS = '<img src=x onerror=alert(1)>';

let server;
let browser;
const contexts = new Set();
const problems = []; // page errors, dialogs, CSP violations

// ---- the server -------------------------------------------------------------

// Starts the chat binary on 127.0.0.1 port 0, from a working directory that
// is not the repository (the front end must still be found), and reads
// the port from its "listening on http://HOST:PORT" line.
async function startChat({ timeoutMs = 20_000 } = {}) {
  const cwd = mkdtempSync(join(tmpdir(), 'talon-chat-cwd-'));
  const env = { ...process.env, HOST: '127.0.0.1', PORT: '' };
  delete env.CHAT_PUBLIC;
  const child = spawn(CHAT_BIN, ['0'], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  const kill = () => { try { child.kill('SIGKILL'); } catch {} };
  process.on('exit', kill); // never leave it behind

  const port = await new Promise((resolvePort, reject) => {
    const timer = setTimeout(() => reject(new Error(
      `chat did not report listening in ${timeoutMs} ms; stdout=${JSON.stringify(stdout)} stderr=${JSON.stringify(stderr)}`)), timeoutMs);
    const look = () => {
      const m = /listening on http:\/\/([^\s:]+):(\d+)/.exec(stdout);
      if (m) { clearTimeout(timer); resolvePort(Number(m[2])); }
    };
    child.stdout.on('data', look);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`chat exited early (code ${code}, signal ${signal}); stderr=${stderr}`));
    });
  }).catch((e) => { kill(); rmSync(cwd, { recursive: true, force: true }); throw e; });

  let stopped = null;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    wsUrl: (room) => `ws://127.0.0.1:${port}/chat/${room}`,
    stdout: () => stdout,
    alive: () => child.exitCode === null && child.signalCode === null,
    stop() {
      stopped ??= (async () => {
        const wasAlive = child.exitCode === null && child.signalCode === null;
        if (wasAlive) child.kill('SIGTERM');
        const t = setTimeout(kill, 5000);
        const r = await exited;
        clearTimeout(t);
        process.off('exit', kill);
        rmSync(cwd, { recursive: true, force: true });
        return { ...r, wasAlive, stderr };
      })();
      return stopped;
    },
  };
}

// Interrupted (Ctrl-C, a runner's SIGTERM): the 'exit' handlers kill the
// server; exiting closes the browser's pipe, which ends it too.
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(130));

before(async () => {
  server = await startChat();
  browser = await launchChromium();
});

after(async () => {
  try {
    for (const c of contexts) await c.close().catch(() => {});
    if (browser) await browser.close();
  } finally {
    if (server) {
      const alive = server.alive();
      const r = await server.stop();
      if (r.stderr) console.log(r.stderr.replace(/^/gm, '# server stderr: '));
      assert.ok(alive, `the chat server died during the tests: ${JSON.stringify(r)}`);
      assert.equal(r.code, 0, 'the chat server exits cleanly on SIGTERM');
    }
  }
});

// ---- helpers ----------------------------------------------------------------

async function login(name, { room = ROOM, origin } = {}) {
  const res = await fetch(`${server.url}/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(origin ? { origin } : {}) },
    body: new URLSearchParams({ name, room }).toString(),
  });
  return res;
}

// The `sid=...` pair of a login's Set-Cookie, for non-browser clients.
async function cookieFor(name) {
  const res = await login(name);
  assert.equal(res.status, 303);
  const set = res.headers.get('set-cookie');
  assert.ok(set, 'login sets a cookie');
  return set.split(';')[0];
}

// A WebSocket attempt with the `ws` client: resolves with the HTTP status
// of a refused upgrade, or with the open socket and its first message.
function wsAttempt(url, headers = {}) {
  return new Promise((resolveAttempt, reject) => {
    const ws = new WebSocket(url, { headers });
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`no answer from ${url}`)); }, 10_000);
    ws.on('unexpected-response', (req, res) => {
      clearTimeout(timer);
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => { resolveAttempt({ status: res.statusCode, body }); ws.terminate(); });
    });
    ws.once('message', (data) => {
      clearTimeout(timer);
      resolveAttempt({ status: 101, ws, first: JSON.parse(String(data)) });
    });
    ws.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

// A socket client that collects messages; next(pred) waits for a match.
function client(ws) {
  const got = [];
  const waiters = [];
  ws.on('message', (data) => {
    const m = JSON.parse(String(data));
    got.push(m);
    for (const w of [...waiters]) if (w.pred(m)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(m); }
  });
  const closed = new Promise((r) => ws.on('close', (code) => r(code)));
  return {
    got,
    closed,
    next(pred, ms = 10_000) {
      const hit = got.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((res, rej) => {
        const w = { pred, resolve: (m) => { clearTimeout(t); res(m); } };
        const t = setTimeout(() => { waiters.splice(waiters.indexOf(w), 1); rej(new Error('timed out waiting for a message')); }, ms);
        waiters.push(w);
      });
    },
  };
}

async function newPage(label) {
  const context = await browser.newContext({ viewport: { width: 960, height: 680 } });
  contexts.add(context);
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`${label} pageerror: ${e.message}`));
  page.on('dialog', (d) => { problems.push(`${label} dialog: ${d.message()}`); d.dismiss().catch(() => {}); });
  page.on('console', (m) => {
    if (/Content.Security.Policy/i.test(m.text())) problems.push(`${label} CSP: ${m.text()}`);
  });
  return { context, page };
}

async function closeContext(context) {
  contexts.delete(context);
  await context.close();
}

// Signs in through the page's form and waits until the room's socket is open.
async function joinAs(name, room = ROOM) {
  const { context, page } = await newPage(name);
  await page.goto(`${server.url}/?room=${room}`);
  await page.locator('#login').waitFor(WAIT);
  assert.equal(await page.inputValue('#login-room'), room, 'the room is taken from the URL');
  await page.fill('#name', name);
  await page.click('#login-form button[type=submit]');
  await page.waitForURL(`**/?room=${room}`, WAIT);
  await page.locator('#status[data-state="online"]').waitFor(WAIT);
  assert.equal(await page.textContent('#me'), name);
  assert.equal(await page.textContent('#room-label'), `#${room}`);
  return { context, page };
}

// The access log (stdout) is written off the loop: poll for a line.
async function waitForLog(re, ms = 5000) {
  for (const end = Date.now() + ms; Date.now() < end;) {
    if (re.test(server.stdout())) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.match(server.stdout(), re);
}

const eventLine = (page, text) =>
  page.locator('#log li.event', { hasText: text }).last().waitFor(WAIT);

// The exact texts (textContent) of the page's messages, in order.
const texts = (page) => page.$$eval('#log li.msg', (lis) => lis.map((li) => ({
  author: li.querySelector('.author').textContent,
  text: li.querySelector('.text').textContent,
})));

// ---- HTTP smoke test ----------------------------------------------------------

test('smoke: the page, its assets, headers, /api/me, POST /login, /logout', T, async () => {
  const page = await fetch(`${server.url}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type'), /^text\/html/);
  const html = await page.text();
  assert.match(html, /<title>talon chat<\/title>/);
  assert.match(html, /src="\/app.js"/);
  const csp = page.headers.get('content-security-policy');
  assert.match(csp, /default-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(page.headers.get('x-frame-options'), 'DENY');
  for (const [path, type] of [['/app.js', /javascript/], ['/style.css', /text\/css/], ['/favicon.svg', /svg/]]) {
    const r = await fetch(server.url + path);
    assert.equal(r.status, 200, path);
    assert.match(r.headers.get('content-type'), type, path);
  }

  // Signed out is an answer (200), not an error: the page asks on every
  // visit, and a browser logs every 4xx of a fetch as a console error.
  const anon = await fetch(`${server.url}/api/me`);
  assert.equal(anon.status, 200);
  assert.deepEqual(await anon.json(), { name: null });

  const ok = await login('alice smith');
  assert.equal(ok.status, 303);
  assert.equal(ok.headers.get('location'), `/?room=${ROOM}`);
  const set = ok.headers.get('set-cookie');
  // A random session id, signed; the name stays on the server.
  assert.match(set, /^sid=[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{43};/);
  assert.match(set, /HttpOnly/);
  assert.match(set, /SameSite=Lax/);
  assert.match(set, /Path=\//);
  const cookie = set.split(';')[0];
  const whoIs = async (c) => (await (await fetch(`${server.url}/api/me`, { headers: { cookie: c } })).json()).name;
  const me = await fetch(`${server.url}/api/me`, { headers: { cookie } });
  assert.equal(me.status, 200);
  assert.deepEqual(await me.json(), { name: 'alice smith' });

  // A changed id or signature is not accepted.
  const forged = cookie.slice(0, 5) + (cookie[5] === 'A' ? 'B' : 'A') + cookie.slice(6);
  assert.equal(await whoIs(forged), null);
  assert.equal(await whoIs(cookie.split('.')[0]), null);
  assert.equal(await whoIs('name=alice'), null);

  // Names: 1-24 printable characters; rooms: [A-Za-z0-9_-]{1,32}.
  for (const bad of ['', '   ', 'x'.repeat(25), 'tab\there', 'nul\0x', 'é', 'two  spaces']) {
    const r = await login(bad);
    assert.equal(r.status, 303, JSON.stringify(bad));
    assert.equal(r.headers.get('location'), `/?error=name&room=${ROOM}`, JSON.stringify(bad));
    assert.equal(r.headers.get('set-cookie'), null, JSON.stringify(bad));
  }
  assert.equal((await login('x'.repeat(24))).status, 303);
  assert.ok((await login('x'.repeat(24))).headers.get('set-cookie'));
  const badRoom = await login('bob', { room: '../etc' });
  assert.equal(badRoom.headers.get('location'), '/?error=room');
  assert.equal(badRoom.headers.get('set-cookie'), null);

  // A form on another site cannot sign anyone in (login CSRF); this one can.
  const csrf = await login('mallory', { origin: 'http://evil.example' });
  assert.equal(csrf.status, 403);
  assert.equal(csrf.headers.get('set-cookie'), null);
  assert.equal((await login('alice', { origin: server.url })).status, 303);

  const out = await fetch(`${server.url}/logout`, { redirect: 'manual', headers: { cookie } });
  assert.equal(out.status, 303);
  assert.equal(out.headers.get('location'), '/');
  assert.match(out.headers.get('set-cookie'), /^sid=; .*Max-Age=0/);
  // The session ended on the server: a kept copy of the cookie is dead.
  assert.equal(await whoIs(cookie), null);
});

// ---- WebSocket refusals, checked without a browser ----------------------------

test('ws upgrade: 401 without a valid cookie, 403 for a foreign origin, 400 for a bad room', T, async () => {
  const cookie = await cookieFor('wsuser');
  assert.equal((await wsAttempt(server.wsUrl(ROOM))).status, 401);
  assert.equal((await wsAttempt(server.wsUrl(ROOM), { cookie: 'name=wsuser' })).status, 401);
  assert.equal((await wsAttempt(server.wsUrl(ROOM), { cookie: cookie.split('.')[0] })).status, 401);
  assert.equal((await wsAttempt(server.wsUrl(ROOM), { cookie: cookie.slice(0, -1) + (cookie.endsWith('A') ? 'B' : 'A') })).status, 401);
  assert.equal((await wsAttempt(server.wsUrl(ROOM), { cookie, origin: 'http://evil.example' })).status, 403);
  assert.equal((await wsAttempt(server.wsUrl(ROOM), { cookie, origin: `http://127.0.0.1:${server.port + 1}` })).status, 403);
  assert.equal((await wsAttempt(server.wsUrl(ROOM), { cookie, origin: 'null' })).status, 403);
  assert.equal((await wsAttempt(server.wsUrl('no%20spaces'), { cookie })).status, 400);
  assert.equal((await wsAttempt(server.wsUrl('x'.repeat(33)), { cookie })).status, 400);
  // Same origin (and no Origin at all, a non-browser client) is fine.
  for (const origin of [server.url, undefined]) {
    const r = await wsAttempt(server.wsUrl('ws-check'), origin ? { cookie, origin } : { cookie });
    assert.equal(r.status, 101);
    assert.equal(r.first.type, 'welcome');
    assert.equal(r.first.name, 'wsuser');
    assert.equal(r.first.room, 'ws-check');
    assert.deepEqual(r.first.history, []);
    const c = client(r.ws);
    r.ws.close();
    await c.closed;
  }
});

test('history keeps the last 50 messages of a room, in order', T, async () => {
  const room = 'ring';
  const socks = [];
  // Three senders (each stays inside its rate limit), 57 messages in all.
  for (const who of ['r1', 'r2', 'r3']) {
    const r = await wsAttempt(server.wsUrl(room), { cookie: await cookieFor(who) });
    assert.equal(r.status, 101);
    socks.push({ who, ws: r.ws, c: client(r.ws) });
  }
  let n = 0;
  for (const s of socks) {
    for (let i = 0; i < 19; i++) s.ws.send(`m${n++}`);
    await s.c.next((m) => m.type === 'message' && m.text === `m${n - 1}`);
  }
  const late = await wsAttempt(server.wsUrl(room), { cookie: await cookieFor('late') });
  const h = late.first.history;
  assert.equal(h.length, 50);
  assert.deepEqual(h.map((m) => m.text), Array.from({ length: 50 }, (_, i) => `m${i + 7}`));
  assert.equal(h[0].name, 'r1');
  assert.equal(h[49].name, 'r3');
  for (let i = 1; i < 50; i++) assert.ok(h[i].id > h[i - 1].id, 'ids increase');
  const lc = client(late.ws);
  // The others saw the late one join: 4 members.
  const j = await socks[0].c.next((m) => m.type === 'join' && m.name === 'late');
  assert.equal(j.members, 4);
  for (const s of [...socks, { ws: late.ws, c: lc }]) { s.ws.close(); await s.c.closed; }
});

// ---- in the browser ----------------------------------------------------------------

test('a first visit: the network goes idle and the console stays clean', T, async () => {
  const { context, page } = await newPage('visitor');
  const logged = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') logged.push(m.text()); });
  const unfinished = new Set();
  page.on('request', (q) => unfinished.add(q.url()));
  page.on('requestfinished', (q) => unfinished.delete(q.url()));
  page.on('requestfailed', (q) => logged.push(`failed: ${q.url()}`));
  try {
    // networkidle: no request in flight for 500 ms. The signed-out
    // /api/me answer used to stay unread (pending) and be a 401 (logged
    // as an error), so this timed out.
    await page.goto(`${server.url}/?room=${ROOM}`, { waitUntil: 'networkidle', timeout: 15_000 });
    await page.locator('#login').waitFor(WAIT);
    assert.deepEqual([...unfinished], []);
    assert.deepEqual(logged, []);
  } finally {
    await closeContext(context);
  }
});

let alice;
let bob;

test('two users sign in, join the room and see each other arrive', T, async () => {
  alice = await joinAs('alice');
  await members(alice.page, 1);
  await eventLine(alice.page, `You joined #${ROOM}`);
  bob = await joinAs('bob');
  await members(bob.page, 2);
  await members(alice.page, 2);
  await eventLine(alice.page, 'bob joined');
  assert.equal(await alice.page.textContent('#members'), '2 online');
  assert.equal(await alice.page.isHidden('#login'), true);
});

test('messages both ways, shown with their authors', T, async () => {
  await send(alice.page, 'Hi Bob! Welcome to the lobby.');
  await messageLine(bob.page, 'alice', 'Hi Bob! Welcome to the lobby.');
  await send(bob.page, 'Hey Alice, this whole chat is one small C program.');
  await messageLine(alice.page, 'bob', 'Hey Alice, this whole chat is one small C program.');
  await send(alice.page, 'Pages, cookies and the WebSocket, all on one port.');
  await messageLine(bob.page, 'alice', 'Pages, cookies and the WebSocket, all on one port.');
  assert.equal(await alice.page.inputValue('#text'), '', 'the input is cleared after sending');
  const a = await texts(alice.page);
  const b = await texts(bob.page);
  assert.deepEqual(a, b, 'both see the same conversation');
  assert.deepEqual(a.map((m) => m.author), ['alice', 'bob', 'alice']);
  // Own messages are marked as such.
  assert.equal(await alice.page.locator('#log li.msg.mine').count(), 2);
  assert.equal(await bob.page.locator('#log li.msg.mine').count(), 1);
});

test('HTML in a message is shown as text, never run', T, async () => {
  await send(bob.page, XSS);
  await messageLine(alice.page, 'bob', XSS);
  for (const p of [alice.page, bob.page]) {
    const last = (await texts(p)).at(-1);
    assert.deepEqual(last, { author: 'bob', text: XSS });
    assert.equal(await p.locator('#log img').count(), 0, 'no <img> element was created');
    const html = await p.locator('#log li.msg .text').last().innerHTML();
    assert.equal(html, '&lt;img src=x onerror=alert(1)&gt;');
  }
  await alice.page.waitForTimeout(300); // let an onerror fire if there was one
  assert.deepEqual(problems, []);
});

test('screenshot of the conversation (docs/chat.png with UPDATE_SCREENSHOT=1)', T, async () => {
  await send(alice.page, 'Nice try, Bob: that is shown as text.');
  await messageLine(bob.page, 'alice', 'Nice try, Bob: that is shown as text.');
  await alice.page.locator('#text').blur();
  await alice.page.waitForTimeout(100);
  const keep = process.env.UPDATE_SCREENSHOT === '1';
  const dir = keep ? null : mkdtempSync(join(tmpdir(), 'talon-chat-'));
  const file = keep ? SCREENSHOT : join(dir, 'chat.png');
  try {
    await alice.page.screenshot({ path: file });
    const png = readFileSync(file);
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
    assert.ok(statSync(file).size > 5000, 'the screenshot is not empty');
    if (keep) console.log(`# screenshot written to ${file} (${statSync(file).size} bytes)`);
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
});

test('a name with HTML in it is text as well', T, async () => {
  const eve = await joinAs('<b>eve</b>');
  await eventLine(alice.page, '<b>eve</b> joined');
  await members(alice.page, 3);
  assert.equal(await eve.page.textContent('#me'), '<b>eve</b>');
  await send(eve.page, 'hello');
  await messageLine(alice.page, '<b>eve</b>', 'hello');
  for (const p of [alice.page, eve.page]) assert.equal(await p.locator('#log b, #session b').count(), 0);
  await closeContext(eve.context);
  await eventLine(alice.page, '<b>eve</b> left');
  await members(alice.page, 2);
  await members(bob.page, 2);
});

test('a message over 2 KiB is refused (1009): the page says so and reconnects', T, async () => {
  const long = 'x'.repeat(3000);
  await send(alice.page, long);
  await alice.page.locator('#notice', { hasText: /message too long/i }).waitFor(WAIT);
  // Bob sees alice's socket go and come back.
  await eventLine(bob.page, 'alice left');
  await alice.page.locator('#status[data-state="online"]').waitFor(WAIT);
  await members(bob.page, 2);
  await members(alice.page, 2);
  assert.ok(await alice.page.isVisible('#notice'), 'the notice is still shown after reconnecting');
  assert.equal(await alice.page.inputValue('#text'), long, 'the refused text is given back to edit');
  await alice.page.fill('#text', '');
  for (const p of [alice.page, bob.page]) {
    assert.ok((await texts(p)).every((m) => !m.text.startsWith('xxxxxxxx')), 'the long message went nowhere');
  }
  // After the reconnect alice has the history again, and can still talk.
  assert.deepEqual((await texts(alice.page)).map((m) => m.author),
                   ['alice', 'bob', 'alice', 'bob', 'alice', '<b>eve</b>']);
  await send(alice.page, 'Still here.');
  await messageLine(bob.page, 'alice', 'Still here.');
});

test('a user joining later sees the last messages', T, async () => {
  const carol = await joinAs('carol');
  await carol.page.locator('#log li.event.history-mark').waitFor(WAIT);
  const seen = await texts(carol.page);
  const alices = await texts(alice.page);
  assert.deepEqual(seen, alices, 'carol got the whole conversation so far');
  assert.equal(seen.at(-1).text, 'Still here.');
  assert.ok(seen.some((m) => m.text === XSS));
  assert.equal(await carol.page.locator('#log img').count(), 0);
  await members(carol.page, 3);
  await members(alice.page, 3);
  await closeContext(carol.context);
  await eventLine(alice.page, 'carol left');
  await members(alice.page, 2);
});

test('when one leaves, the other sees it and the count goes from 2 to 1', T, async () => {
  assert.equal(await alice.page.getAttribute('#members', 'data-count'), '2');
  await closeContext(bob.context);
  await eventLine(alice.page, 'bob left');
  await members(alice.page, 1);
  assert.equal(await alice.page.textContent('#members'), '1 online');
});

test('without the cookie: the page asks to sign in and the ws upgrade gets 401', T, async () => {
  const { context, page } = await newPage('mallory');
  try {
    await page.goto(`${server.url}/?room=${ROOM}`);
    await page.locator('#login').waitFor(WAIT);
    assert.equal(await page.isHidden('#chat'), true);
    assert.equal(await page.isHidden('#session'), true);
    // A socket opened by hand from the page is refused (the browser only
    // sees a failed handshake; the server logged the 401).
    const r = await page.evaluate(() => new Promise((done) => {
      const ws = new WebSocket(`ws://${location.host}/chat/lobby-401`);
      let opened = false;
      ws.onopen = () => { opened = true; ws.close(); };
      ws.onclose = (e) => done({ opened, code: e.code });
    }));
    assert.deepEqual(r, { opened: false, code: 1006 });
    assert.equal((await wsAttempt(server.wsUrl(ROOM), { origin: server.url })).status, 401);
  } finally {
    await closeContext(context);
  }
  await waitForLog(/"GET \/chat\/lobby-401 HTTP\/1\.1" 401 /);
});

test('a sign-in that stops working: the refused socket brings the page back to the form', T, async () => {
  const dave = await joinAs('dave');
  try {
    await dave.context.clearCookies();
    await dave.page.fill('#room-input', 'elsewhere');
    await dave.page.click('#room-form button');
    await dave.page.locator('#login').waitFor(WAIT);
    assert.match(await dave.page.textContent('#login-notice'), /sign in/i);
    assert.equal(await dave.page.inputValue('#login-room'), 'elsewhere');
    // Signing in again works and lands in that room.
    await dave.page.fill('#name', 'dave');
    await dave.page.click('#login-form button[type=submit]');
    await dave.page.waitForURL('**/?room=elsewhere', WAIT);
    await dave.page.locator('#status[data-state="online"]').waitFor(WAIT);
    assert.equal(await dave.page.textContent('#room-label'), '#elsewhere');
  } finally {
    await closeContext(dave.context);
  }
});

test('a page of another origin cannot use the cookie (403)', T, async () => {
  // Cookies are per host, not per port: a page served from another port of
  // the same host gets alice's cookie sent along with its WebSocket. The
  // server refuses its Origin.
  const evil = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>evil</title>');
  });
  await new Promise((r) => evil.listen(0, '127.0.0.1', r));
  const { context, page } = await newPage('foreign');
  try {
    const cookie = await cookieFor('alice');
    const [name, value] = cookie.split(/=(.*)/s);
    await context.addCookies([{ name, value, url: server.url }]);
    await page.goto(`http://127.0.0.1:${evil.address().port}/`);
    const r = await page.evaluate((url) => new Promise((done) => {
      const ws = new WebSocket(url);
      let opened = false;
      ws.onopen = () => { opened = true; ws.close(); };
      ws.onclose = (e) => done({ opened, code: e.code });
    }), server.wsUrl('lobby-403'));
    assert.deepEqual(r, { opened: false, code: 1006 });
    await waitForLog(/"GET \/chat\/lobby-403 HTTP\/1\.1" 403 /);
  } finally {
    await closeContext(context);
    evil.closeAllConnections();
    await new Promise((r) => evil.close(r));
  }
});

test('signing out ends the session in every window of it', T, async () => {
  // A second window of alice's browser (same cookie), in another room.
  const second = await alice.context.newPage();
  second.on('pageerror', (e) => problems.push(`alice-2 pageerror: ${e.message}`));
  await second.goto(`${server.url}/?room=second`);
  await second.locator('#status[data-state="online"]').waitFor(WAIT);
  const [cookie] = (await alice.context.cookies()).filter((c) => c.name === 'sid');
  assert.ok(cookie, 'signed in with a session cookie');

  await alice.page.click('#logout');
  await alice.page.locator('#login').waitFor(WAIT);
  assert.equal((await alice.context.cookies()).filter((c) => c.name === 'sid').length, 0);
  // The server closed the other window's socket (4001): it asks to sign in.
  await second.locator('#login').waitFor(WAIT);
  assert.match(await second.textContent('#login-notice'), /signed out/i);
  // A copy of the old cookie opens no socket.
  const r = await wsAttempt(server.wsUrl(ROOM), { cookie: `sid=${cookie.value}` });
  assert.equal(r.status, 401);
  await closeContext(alice.context);
});

test('no page errors, no dialogs, no CSP violations; the server is still up', T, () => {
  assert.deepEqual(problems, []);
  assert.ok(server.alive(), 'the chat server is still running');
});
