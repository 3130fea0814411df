// Two chat processes on two ports, one Redis (examples/chat with
// REDIS_URL): two headless Chromium browsers, each on its own process,
// talk; member counts count both; a sign-in made through one process is
// valid on the other, and signing out through one ends it on both.
//
// Needs redis-server (.ci/install-deps installs it): without it the test
// is skipped with a message saying so.
// Run: CHAT_BIN=build/examples/chat node --test tests/browser/chat_redis.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, members, messageLine, send, WAIT } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');

const CHAT_BIN = resolve(process.env.CHAT_BIN || join(root, 'build/examples/chat'));
const T = { timeout: 90_000 };

function which(cmd) {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim();
  } catch { return ''; }
}
const REDIS = which('redis-server');
const SKIP = REDIS ? false : 'redis-server is missing: install it with bash .ci/install-deps';

const children = [];
process.on('exit', () => { for (const c of children) try { c.kill('SIGKILL'); } catch {} });
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(130));

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
    s.on('error', rej);
  });
}

// Spawns argv; resolves once `ready` matches its stdout (with the match).
function start(argv, env, ready, label) {
  const cwd = mkdtempSync(join(tmpdir(), 'talon-chat-redis-'));
  const child = spawn(argv[0], argv.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${label} did not start: ${out} ${err}`)), 20_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        res({
          m, child, stderr: () => err,
          async stop() {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
            const t = setTimeout(() => child.kill('SIGKILL'), 5000);
            const r = await exited;
            clearTimeout(t);
            rmSync(cwd, { recursive: true, force: true });
            return r;
          },
        });
      }
    });
    exited.then((r) => { clearTimeout(timer); rej(new Error(`${label} exited: ${JSON.stringify(r)} ${err}`)); });
  });
}

let redis;
let chats = [];
let browser;

before(async () => {
  if (SKIP) return;
  const port = await freePort();
  redis = await start([REDIS, '--port', String(port), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no'], process.env, /Ready to accept connections/, 'redis-server');
  const env = {
    ...process.env, HOST: '127.0.0.1', PORT: '', REDIS_URL: `redis://127.0.0.1:${port}`,
    CHAT_SECRET: 'browser-test-secret-0123456789abcdef', WORKERS: '2',
  };
  delete env.CHAT_PUBLIC;
  for (let i = 0; i < 2; i++) {
    const s = await start([CHAT_BIN, '0'], env, /listening on http:\/\/[^\s:]+:(\d+)/, 'chat');
    s.url = `http://127.0.0.1:${s.m[1]}`;
    chats.push(s);
  }
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close();
  for (const s of chats) {
    const r = await s.stop();
    assert.equal(r.code, 0, `a chat process exits cleanly on SIGTERM: ${JSON.stringify(r)} ${s.stderr()}`);
  }
  if (redis) await redis.stop();
});

const problems = [];

async function joinAs(server, name, room = 'lobby') {
  const context = await browser.newContext({ viewport: { width: 960, height: 680 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`${name} pageerror: ${e.message}`));
  await page.goto(`${server.url}/?room=${room}`);
  await page.locator('#login').waitFor(WAIT);
  await page.fill('#name', name);
  await page.click('#login-form button[type=submit]');
  await page.waitForURL(`**/?room=${room}`, WAIT);
  await page.locator('#status[data-state="online"]').waitFor(WAIT);
  assert.equal(await page.textContent('#me'), name);
  return { context, page };
}


test('two browsers on two chat processes talk through Redis', { ...T, skip: SKIP }, async () => {
  const [a, b] = chats;
  const alice = await joinAs(a, 'alice');
  const bob = await joinAs(b, 'bob');
  // One room over both processes: each page counts both members.
  await members(alice.page, 2);
  await members(bob.page, 2);
  await send(alice.page, 'hello from process A');
  await messageLine(bob.page, 'alice', 'hello from process A');
  await send(bob.page, 'hello back from process B');
  await messageLine(alice.page, 'bob', 'hello back from process B');
  await messageLine(alice.page, 'alice', 'hello from process A');

  // alice's sign-in (made through A) opens the same room on B, with the
  // history; the cookie is the host's, whatever the port.
  const page2 = await alice.context.newPage();
  await page2.goto(`${b.url}/?room=lobby`);
  await page2.locator('#status[data-state="online"]').waitFor(WAIT);
  assert.equal(await page2.textContent('#me'), 'alice');
  await messageLine(page2, 'alice', 'hello from process A');
  await messageLine(page2, 'bob', 'hello back from process B');
  await members(bob.page, 3);

  // Signing out through B ends the sign-in on A too: alice's page on A
  // goes back to the sign-in form.
  await page2.click('#logout');
  await page2.locator('#login').waitFor(WAIT);
  await alice.page.locator('#login').waitFor(WAIT);
  const me = await (await fetch(`${a.url}/api/me`, {
    headers: { cookie: (await alice.context.cookies()).map((c) => `${c.name}=${c.value}`).join('; ') },
  })).json();
  assert.deepEqual(me, { name: null });
  await members(bob.page, 1);
  assert.deepEqual(problems, []);
  await alice.context.close();
  await bob.context.close();
});
