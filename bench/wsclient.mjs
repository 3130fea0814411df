// Client-side WebSocket echo load in JavaScript, the same protocol as
// bench/wsclient_load.c (CONNECTIONS sockets, one SIZE-byte text message
// in flight each, every echo checked). One file for both runtimes: under
// Bun it uses Bun's built-in WebSocket client, under Node the `ws`
// package (tests/interop's: bash .ci/install-node-deps); both through the
// same onopen/onmessage interface. Prints
//   <bun|node-ws>-client msgs/s=<n> p50_us=<n> p99_us=<n> errors=<n>
// Usage: {bun|node} wsclient.mjs URL CONNECTIONS SIZE DURATION_S WARMUP_S
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const isBun = typeof globalThis.Bun !== 'undefined';
let WS = globalThis.WebSocket;
if (!isBun) {
  const here = path.dirname(fileURLToPath(import.meta.url));
  WS = createRequire(path.join(here, '..', 'tests', 'interop', 'package.json'))('ws');
}
const name = isBun ? 'bun-client' : 'node-ws-client';
const nowUs = () => Number(process.hrtime.bigint() / 1000n);

const [url, nconns, size, duration, warmup] = process.argv.slice(2);
const n = Number(nconns), secs = Number(duration);
const payload = Array.from({ length: Number(size) }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
let open = 0, from = 0, to = 0, count = 0, errors = 0, done = false;
const samples = [];
const socks = [];

function finish() {
  if (done) return;
  done = true;
  samples.sort((a, b) => a - b);
  const p = (q) => (samples.length ? samples[Math.floor(samples.length * q)] : 0);
  console.log(`${name} msgs/s=${Math.round(count / secs)} p50_us=${p(0.5)} p99_us=${p(0.99)} errors=${errors}`);
  for (const s of socks) s.close();
  process.exit(errors ? 1 : 0);
}

for (let i = 0; i < n; i++) {
  const ws = isBun ? new WS(url) : new WS(url, { perMessageDeflate: false });
  socks.push(ws);
  let sentAt = 0;
  const send = () => { sentAt = nowUs(); ws.send(payload); };
  ws.onopen = () => {
    if (++open === n) {
      from = Date.now() + Number(warmup) * 1000;
      to = from + secs * 1000;
    }
    send();
  };
  ws.onmessage = (ev) => {
    const now = Date.now();
    if (ev.data !== payload) errors++;
    if (to && now >= from && now < to) {
      count++;
      samples.push(nowUs() - sentAt);
    }
    if (to && now >= to) { finish(); return; }
    send();
  };
  ws.onerror = (e) => { console.error(`${name}: ${e.message ?? 'error'}`); errors++; finish(); };
}
