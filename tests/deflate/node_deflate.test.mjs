// permessage-deflate interop: the `ws` npm client (from
// ../interop/node_modules) with perMessageDeflate against
// deflate_test_server (DEFLATE_BIN) and the echo example (ECHO_BIN).
// Run: DEFLATE_BIN=... ECHO_BIN=... node --test node_deflate.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../interop/package.json', import.meta.url));
const WebSocket = require('ws');
const T = { timeout: 60_000 };

async function start(bin) {
  if (!bin) throw new Error('DEFLATE_BIN / ECHO_BIN not set');
  const child = spawn(bin, ['0'], {
    env: { ...process.env, HOST: '127.0.0.1', PORT: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  process.on('exit', () => { try { child.kill('SIGKILL'); } catch {} });
  const port = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no listening line: ${out} ${err}`)), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on http:\/\/([^\s:]+):(\d+)/.exec(out);
      if (m) { clearTimeout(t); resolve(Number(m[2])); }
    });
    exited.then((r) => reject(new Error(`exited early ${JSON.stringify(r)} ${err}`)));
  });
  return {
    port,
    alive: () => child.exitCode === null && child.signalCode === null,
    async stop() {
      child.kill('SIGTERM');
      const r = await exited;
      return { ...r, stderr: err };
    },
  };
}

let srv, echo;
before(async () => {
  srv = await start(process.env.DEFLATE_BIN);
  echo = await start(process.env.ECHO_BIN);
});
after(async () => {
  for (const s of [srv, echo]) {
    if (!s) continue;
    const alive = s.alive();
    const r = await s.stop();
    assert.ok(alive, `server died during the tests: ${r.stderr}`);
    assert.equal(r.code, 0, `server exit ${JSON.stringify(r)}`);
    assert.ok(!/AddressSanitizer|LeakSanitizer|runtime error/.test(r.stderr), r.stderr);
  }
});

function open(url, pmd) {
  const ws = new WebSocket(url, { perMessageDeflate: pmd, maxPayload: 0 });
  const queue = [];
  const waiters = [];
  ws.on('message', (data, isBinary) => {
    const m = { data, isBinary };
    const w = waiters.shift();
    if (w) w.resolve(m); else queue.push(m);
  });
  const closed = new Promise((r) => ws.on('close', (code) => {
    r(code);
    for (const w of waiters.splice(0)) w.reject(new Error(`closed ${code}`));
  }));
  ws.on('error', () => {});
  const next = () => (queue.length ? Promise.resolve(queue.shift())
    : new Promise((resolve, reject) => waiters.push({ resolve, reject })));
  return new Promise((resolve, reject) => {
    let res;
    ws.once('upgrade', (r) => { res = r; });
    ws.once('open', () => resolve({ ws, next, closed, ext: res.headers['sec-websocket-extensions'] }));
    ws.once('error', reject);
  });
}

function text(n, seed) {
  const words = ['talon', 'deflate', 'ü', '€', '😀', 'window', 'node'];
  const parts = ['x'];
  let len = 1;
  let i = seed;
  while (len < n) {
    i = (i * 1103515245 + 12345) >>> 0;
    const w = ' ' + words[(i >>> 16) % words.length];
    parts.push(w);
    len += Buffer.byteLength(w);
  }
  return parts.join('');
}

const payloads = () => {
  const out = ['', 'a', text(100, 1), text(127, 2), text(128, 3), text(5000, 4),
    text(300000, 5), Buffer.alloc(0), Buffer.alloc(1 << 20), Buffer.from([0, 1, 2, 255])];
  const r = Buffer.alloc(100000);
  for (let i = 0; i < r.length; i++) r[i] = (i * 2654435761) >>> 24;
  out.push(r);
  for (let i = 0; i < 40; i++) out.push(text(i * 97, i));
  return out;
};

async function roundtrip(c) {
  for (const p of payloads()) {
    c.ws.send(p);
    const m = await c.next();
    if (typeof p === 'string') {
      assert.equal(m.isBinary, false);
      assert.equal(m.data.toString(), p);
    } else {
      assert.equal(m.isBinary, true);
      assert.ok(Buffer.compare(m.data, p) === 0, `binary ${p.length}`);
    }
  }
  // Pipelined.
  const ps = payloads();
  for (const p of ps) c.ws.send(p);
  for (const p of ps) {
    const m = await c.next();
    assert.equal(Buffer.from(m.data).length, Buffer.byteLength(p));
  }
}

const VARIANTS = [
  [{ threshold: 0 }, null],
  [{ threshold: 0, serverNoContextTakeover: true }, '; server_no_context_takeover'],
  [{ threshold: 0, clientNoContextTakeover: true }, '; client_no_context_takeover'],
  [{ threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true },
    '; server_no_context_takeover; client_no_context_takeover'],
  [{ threshold: 0, serverMaxWindowBits: 10 }, '; server_max_window_bits=10'],
  [{ threshold: 0, serverNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 9 },
    '; server_no_context_takeover; server_max_window_bits=9'],
  [{}, null],
];

// The exact answers, as the model in pmdmodel.py computes them.
function expected(route, pmd) {
  const ded = { '/dedicated': [true, 15, true], '/small-window': [true, 9, true],
    '/shared': [false, 15, false], '/comp-only': [true, 15, false], '/ws': [true, 15, true] }[route];
  const s = pmd.serverNoContextTakeover || !ded[0];
  const c = pmd.clientNoContextTakeover || !ded[2];
  const smwb = pmd.serverMaxWindowBits;
  const sb = smwb ? Math.min(smwb, ded[1]) : ded[1];
  let out = 'permessage-deflate' + (s ? '; server_no_context_takeover' : '') +
    (c ? '; client_no_context_takeover' : '');
  if (smwb !== undefined || sb < 15) out += `; server_max_window_bits=${sb}`;
  return out;
}

for (const route of ['/ws', '/shared', '/dedicated', '/small-window', '/comp-only']) {
  for (const [pmd] of VARIANTS) {
    test(`ws ${JSON.stringify(pmd)} -> ${route}`, T, async () => {
      const port = route === '/ws' ? echo.port : srv.port;
      const c = await open(`ws://127.0.0.1:${port}${route}`, pmd);
      try {
        assert.equal(c.ext, expected(route, pmd));
        await roundtrip(c);
      } finally {
        c.ws.close();
        await c.closed;
      }
    });
  }
}

test('ws perMessageDeflate:false on a compression route', T, async () => {
  const c = await open(`ws://127.0.0.1:${srv.port}/dedicated`, false);
  assert.equal(c.ext, undefined);
  await roundtrip(c);
  c.ws.close();
  await c.closed;
});

test('ws subscribers, mixed, publish', T, async () => {
  const url = `ws://127.0.0.1:${srv.port}`;
  const cs = [
    await open(url + '/pub-shared', { threshold: 0 }),
    await open(url + '/pub-dedicated', { threshold: 0 }),
    await open(url + '/pub-dedicated', { threshold: 0, serverNoContextTakeover: true }),
    await open(url + '/pub-shared', false),
    await open(url + '/pub-plain', { threshold: 0 }),
  ];
  await new Promise((r) => setTimeout(r, 100));
  for (let i = 0; i < 20; i++) {
    const msg = text([10, 200, 70000][i % 3], i);
    cs[i % cs.length].ws.send('pub ' + msg);
    for (const c of cs) assert.equal((await c.next()).data.toString(), msg);
  }
  for (const c of cs) { c.ws.close(); await c.closed; }
});
