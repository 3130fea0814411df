// Interop: headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) against talon's echo example: the page GET / is served
// by the same server and talks to /ws.
// Run: ECHO_BIN=build/examples/echo node --test browser.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startEcho } from './server.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const T = { timeout: 90_000 };

let server;
let browser;
let page;
let pageLog = [];

before(async () => {
  server = await startEcho();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  page = await browser.newPage();
  page.on('console', (m) => pageLog.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => pageLog.push(`pageerror: ${e.message}`));
  const res = await page.goto(server.url + '/');
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-type'] || '', /text\/html/);
});

after(async () => {
  try {
    if (browser) await browser.close();
  } finally {
    if (server) {
      const alive = server.alive();
      const r = await server.stop();
      if (r.stderr) console.log(r.stderr.replace(/^/gm, '# server stderr: '));
      assert.ok(alive, `echo server died during the tests: ${JSON.stringify(r)}`);
    }
  }
});

// Opens a WebSocket in the page and runs `body` (a function source taking
// the open socket and a `next()` that resolves with the next message).
// Helpers are defined inside the page so the test needs no bundler.
async function inPage(body, arg) {
  return page.evaluate(async ({ body, arg }) => {
    const ws = new WebSocket(`ws://${location.host}/ws`);
    ws.binaryType = 'arraybuffer';
    const queue = [];
    const waiters = [];
    ws.onmessage = (e) => { const w = waiters.shift(); if (w) w(e.data); else queue.push(e.data); };
    const closed = new Promise((resolve) => {
      ws.onclose = (e) => resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean });
    });
    const next = () => queue.length ? Promise.resolve(queue.shift())
                                    : new Promise((r) => waiters.push(r));
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error('WebSocket error before open'));
    });
    try {
      // eslint-disable-next-line no-new-func
      const fn = new Function('ws', 'next', 'closed', 'arg', `return (${body})(ws, next, closed, arg);`);
      return await fn(ws, next, closed, arg);
    } finally {
      if (ws.readyState === WebSocket.OPEN) ws.close();
    }
  }, { body: body.toString(), arg });
}

test('the page connects and permessage-deflate (offered by Chromium) is accepted', T, async () => {
  const r = await inPage(async (ws) => ({ extensions: ws.extensions, protocol: ws.protocol }));
  assert.match(r.extensions, /^permessage-deflate/);
  assert.equal(r.protocol, '');
});

test('text round trip', T, async () => {
  const r = await inPage(async (ws, next) => {
    const out = [];
    for (const s of ['hello', '', 'ünïcødé ✓ 😀', 'x'.repeat(125), 'y'.repeat(126), 'z'.repeat(70000)]) {
      ws.send(s);
      const got = await next();
      out.push({ ok: got === s, type: typeof got, len: got.length });
    }
    return out;
  });
  for (const [i, x] of r.entries()) {
    assert.equal(x.type, 'string', `message ${i} came back as text`);
    assert.ok(x.ok, `message ${i} (length ${x.len}) differs`);
  }
});

test('binary ArrayBuffer 64 KiB, bytes verified', T, async () => {
  const r = await inPage(async (ws, next) => {
    const n = 64 * 1024;
    const buf = new Uint8Array(n);
    for (let i = 0; i < n; i++) buf[i] = (i * 7 + (i >> 8)) & 0xff;
    ws.send(buf.buffer);
    const got = await next();
    if (!(got instanceof ArrayBuffer)) return { kind: typeof got };
    const g = new Uint8Array(got);
    let bad = -1;
    for (let i = 0; i < n; i++) if (g[i] !== buf[i]) { bad = i; break; }
    // A Blob round trip as well (binaryType is only about receiving).
    ws.send(new Blob([buf.subarray(0, 1000)]));
    const got2 = new Uint8Array(await next());
    let bad2 = got2.length === 1000 ? -1 : -2;
    for (let i = 0; i < got2.length && bad2 === -1; i++) if (got2[i] !== buf[i]) bad2 = i;
    return { kind: 'arraybuffer', len: g.length, bad, bad2 };
  });
  assert.deepEqual(r, { kind: 'arraybuffer', len: 64 * 1024, bad: -1, bad2: -1 });
});

test('1 MiB text', T, async () => {
  const r = await inPage(async (ws, next) => {
    let s = '';
    const unit = 'talon ✓ 😀 0123456789 ';
    while (s.length < 1024 * 1024) s += unit;
    s = s.slice(0, 1024 * 1024);
    if (/[\ud800-\udbff]$/.test(s)) s = s.slice(0, -1);
    ws.send(s);
    const got = await next();
    return { type: typeof got, same: got === s, len: got.length, want: s.length };
  });
  assert.equal(r.type, 'string');
  assert.ok(r.same, `1 MiB text differs (got ${r.len} chars, want ${r.want})`);
});

test('many messages in order, mixed text and binary', T, async () => {
  const r = await inPage(async (ws, next) => {
    const N = 500;
    for (let i = 0; i < N; i++) {
      if (i % 4 === 3) ws.send(new Uint8Array([i & 0xff, i >> 8]).buffer);
      else ws.send(`m${i}`);
    }
    for (let i = 0; i < N; i++) {
      const got = await next();
      if (i % 4 === 3) {
        const g = new Uint8Array(got);
        if (!(got instanceof ArrayBuffer) || g[0] !== (i & 0xff) || g[1] !== i >> 8) return { bad: i };
      } else if (got !== `m${i}`) return { bad: i, got: String(got).slice(0, 40) };
    }
    return { bad: -1 };
  });
  assert.deepEqual(r, { bad: -1 });
});

test('close with 1000: close event code 1000, wasClean', T, async () => {
  const r = await inPage(async (ws, next, closed) => {
    ws.send('last');
    const echoed = await next();
    ws.close(1000, 'normal');
    const c = await closed;
    return { echoed, ...c };
  });
  assert.equal(r.echoed, 'last');
  assert.equal(r.code, 1000);
  assert.equal(r.wasClean, true);
  assert.ok(r.reason === '' || r.reason === 'normal', `reason ${JSON.stringify(r.reason)}`);
});

test('close with 4001 and a reason: code echoed, wasClean', T, async () => {
  const r = await inPage(async (ws, next, closed) => { ws.close(4001, 'bye'); return closed; });
  assert.equal(r.code, 4001);
  assert.equal(r.wasClean, true);
});

test('the page form: type, send, see the echo (screenshot to a temp dir)', T, async () => {
  const p = await browser.newPage();
  try {
    await p.goto(server.url + '/');
    await p.locator('#log').filter({ hasText: 'connected' }).waitFor({ timeout: 10_000 });
    await p.fill('#m', 'hello from chromium');
    await p.click('button');
    await p.locator('#log').filter({ hasText: 'echo: hello from chromium' }).waitFor({ timeout: 10_000 });
    assert.equal(await p.inputValue('#m'), '', 'the input is cleared after send');
    const log = await p.textContent('#log');
    assert.match(log, /^connected\necho: hello from chromium\n/);
    const dir = mkdtempSync(join(tmpdir(), 'talon-interop-'));
    const file = join(dir, 'echo.png');
    try {
      await p.screenshot({ path: file });
      assert.ok(statSync(file).size > 1000, 'screenshot is not empty');
    } finally {
      // Kept only on request, e.g. to look at it.
      if (process.env.INTEROP_KEEP_SCREENSHOTS) console.log(`# screenshot: ${file}`);
      else rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    await p.close();
  }
});

test('no page errors', T, () => {
  assert.deepEqual(pageLog.filter((l) => l.startsWith('pageerror')), []);
  assert.ok(server.alive(), 'echo server still running');
});
