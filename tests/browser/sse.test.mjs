// Browser test of server-sent events (talon/mw/sse.h): EventSource in
// headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core
// from tests/interop/node_modules) against the hello example's /events.
//
// Run: HELLO_BIN=build/examples/hello node --test tests/browser/sse.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');

const HELLO_BIN = resolve(process.env.HELLO_BIN || join(root, 'build/examples/hello'));
const T = { timeout: 60_000 };

let server;
let browser;
let page;

// Starts hello on 127.0.0.1 port 0 and reads the port from its
// "listening on http://HOST:PORT" line.
async function startHello() {
  const env = { ...process.env, HOST: '127.0.0.1', PORT: '' };
  const child = spawn(HELLO_BIN, ['0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  const kill = () => { try { child.kill('SIGKILL'); } catch {} };
  process.on('exit', kill);
  const port = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`hello did not listen: ${stdout} ${stderr}`)), 20_000);
    const look = () => {
      const m = /listening on http:\/\/([^\s:]+):(\d+)/.exec(stdout);
      if (m) { clearTimeout(timer); res(Number(m[2])); }
    };
    child.stdout.on('data', look);
    exited.then((r) => { clearTimeout(timer); rej(new Error(`hello exited: ${JSON.stringify(r)} ${stderr}`)); });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    alive: () => child.exitCode === null && child.signalCode === null,
    async stop() {
      child.kill('SIGTERM');
      const t = setTimeout(kill, 5000);
      const r = await exited;
      clearTimeout(t);
      process.off('exit', kill);
      return { ...r, stderr };
    },
  };
}

for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(130));

before(async () => {
  server = await startHello();
  browser = await launchChromium();
  page = await (await browser.newContext()).newPage();
  await page.goto(`${server.url}/`); // same origin as /events
});

after(async () => {
  try {
    if (browser) await browser.close();
  } finally {
    if (server) {
      const alive = server.alive();
      const r = await server.stop();
      if (r.stderr) console.log(r.stderr.replace(/^/gm, '# server stderr: '));
      assert.ok(alive, 'the hello server died during the tests');
      assert.equal(r.code, 0, 'hello exits cleanly on SIGTERM');
    }
  }
});

test('EventSource gets named, multi-line events with ids', T, async () => {
  const got = await page.evaluate(() => new Promise((res, rej) => {
    const es = new EventSource('/events?ms=50');
    const events = [];
    let messages = 0;
    es.onmessage = () => { messages++; }; // unnamed events only
    es.addEventListener('tick', (e) => {
      events.push({ data: e.data, id: e.lastEventId, origin: e.origin });
      if (events.length === 3) { es.close(); res({ events, messages, state: es.readyState }); }
    });
    es.onerror = () => { if (es.readyState === EventSource.CLOSED) rej(new Error('closed')); };
    setTimeout(() => rej(new Error(`timeout: ${JSON.stringify(events)}`)), 10_000);
  }));
  assert.equal(got.messages, 0, 'named events do not reach onmessage');
  assert.equal(got.state, 2, 'closed by the page');
  assert.deepEqual(got.events.map((e) => e.id), ['1', '2', '3']);
  for (const [i, e] of got.events.entries()) {
    // two data lines arrive joined with "\n"
    assert.match(e.data, new RegExp(`^tick ${i + 1}\\nat \\d+$`));
    assert.equal(e.origin, server.url);
  }
});

test('the browser reconnects after the stream ends and goes on from Last-Event-ID', T, async () => {
  const got = await page.evaluate(() => new Promise((res, rej) => {
    // each stream sends 2 events and ends; retry 100 ms
    const es = new EventSource('/events?ms=30&limit=2&retry=100');
    const ids = [];
    let opens = 0;
    es.onopen = () => { opens++; };
    es.addEventListener('tick', (e) => {
      ids.push(e.lastEventId);
      if (ids.length === 6) { es.close(); res({ ids, opens }); }
    });
    setTimeout(() => rej(new Error(`timeout: ${JSON.stringify(ids)} opens=${opens}`)), 15_000);
  }));
  // three streams, numbering continued from the id the browser sent back
  assert.deepEqual(got.ids, ['1', '2', '3', '4', '5', '6']);
  assert.equal(got.opens, 3);
});
