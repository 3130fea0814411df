// The chat example over HTTPS and WSS in headless Chromium: the server gets
// TLS_CERT/TLS_KEY (a certificate made for this run with the openssl
// command, trusted by Chromium for the run through its SPKI hash, so no
// other certificate error is ignored), two users sign in on
// https://localhost:PORT/, the page opens its socket with wss://, and
// messages go both ways.
//
// Run: CHAT_BIN=build/examples/chat node --test tests/browser/chat_tls.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, messageLine, WAIT } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');

const CHAT_BIN = resolve(process.env.CHAT_BIN || join(root, 'build/examples/chat'));
const T = { timeout: 90_000 };

let dir, child, stdout = '', stderr = '', port, browser, spki;
const problems = [];

function makeCert() {
  dir = mkdtempSync(join(tmpdir(), 'talon-chat-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt',
    'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  // base64(sha256(SubjectPublicKeyInfo)): what --ignore-certificate-errors-spki-list takes.
  const der = execFileSync('openssl', ['x509', '-in', join(dir, 'cert.pem'), '-pubkey', '-noout']);
  const pub = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'der'], { input: der });
  spki = execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: pub }).toString('base64');
}

before(async () => {
  makeCert();
  const env = { ...process.env, HOST: '127.0.0.1', PORT: '0', TLS_PORT: '0',
    TLS_CERT: join(dir, 'cert.pem'), TLS_KEY: join(dir, 'key.pem') };
  delete env.CHAT_PUBLIC;
  child = spawn(CHAT_BIN, [], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  process.on('exit', () => { try { child.kill('SIGKILL'); } catch {} });
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { stderr += d; });
  port = await new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`no https line: ${stdout} ${stderr}`)), 20_000);
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = /listening on https:\/\/[^\s:]+:(\d+)/.exec(stdout);
      if (m) { clearTimeout(t); res(Number(m[1])); }
    });
  });
  browser = await launchChromium([`--ignore-certificate-errors-spki-list=${spki}`]);
});

after(async () => {
  try {
    if (browser) await browser.close();
  } finally {
    const alive = child.exitCode === null;
    child.kill('SIGTERM');
    const code = await new Promise((r) => child.on('exit', (c) => r(c)));
    rmSync(dir, { recursive: true, force: true });
    if (stderr) console.log(stderr.replace(/^/gm, '# server stderr: '));
    assert.ok(alive, 'the chat server stayed up');
    assert.equal(code, 0, 'the chat server exits cleanly on SIGTERM');
  }
});

async function joinAs(name) {
  const context = await browser.newContext({ viewport: { width: 960, height: 680 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`${name} pageerror: ${e.message}`));
  const wsUrls = [];
  page.on('websocket', (ws) => wsUrls.push(ws.url()));
  const res = await page.goto(`https://localhost:${port}/?room=lobby`);
  assert.equal(res.status(), 200);
  const sec = await res.securityDetails();
  assert.ok(sec, 'the page came over TLS');
  assert.match(sec.protocol, /TLS 1\.3/);
  await page.locator('#login').waitFor(WAIT);
  await page.fill('#name', name);
  await page.click('#login-form button[type=submit]');
  await page.waitForURL('**/?room=lobby', WAIT);
  await page.locator('#status[data-state="online"]').waitFor(WAIT);
  assert.ok(wsUrls.some((u) => u.startsWith(`wss://localhost:${port}/chat/`)),
    `the socket is wss: ${wsUrls}`);
  return { context, page };
}


test('two users chat over HTTPS and WSS', T, async () => {
  const alice = await joinAs('alice');
  const bob = await joinAs('bob');
  await alice.page.locator('#members[data-count="2"]').waitFor(WAIT);
  await alice.page.fill('#text', 'hello over TLS');
  await alice.page.press('#text', 'Enter');
  await messageLine(bob.page, 'alice', 'hello over TLS');
  await bob.page.fill('#text', 'and back, encrypted');
  await bob.page.press('#text', 'Enter');
  await messageLine(alice.page, 'bob', 'and back, encrypted');
  await alice.context.close();
  await bob.context.close();
  assert.deepEqual(problems, []);
});
