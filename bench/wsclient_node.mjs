// Client-side WebSocket echo load with Node's `ws` client, the same
// protocol as bench/wsclient_load.c (CONNECTIONS sockets, one SIZE-byte
// text message in flight each, echoes checked). Prints
//   node-ws-client msgs/s=<n> p50_us=<n> p99_us=<n> errors=<n>
// Usage: node wsclient_node.mjs URL CONNECTIONS SIZE DURATION_S WARMUP_S
// The `ws` package is tests/interop's (bash .ci/install-node-deps).
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'tests', 'interop', 'package.json'));
const WebSocket = require('ws');

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
  console.log(`node-ws-client msgs/s=${Math.round(count / secs)} p50_us=${p(0.5)} p99_us=${p(0.99)} errors=${errors}`);
  for (const s of socks) s.terminate();
  process.exit(errors ? 1 : 0);
}

for (let i = 0; i < n; i++) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  socks.push(ws);
  let sentAt = 0n;
  const send = () => { sentAt = process.hrtime.bigint(); ws.send(payload); };
  ws.on('open', () => {
    if (++open === n) {
      from = Date.now() + Number(warmup) * 1000;
      to = from + secs * 1000;
    }
    send();
  });
  ws.on('message', (data, isBinary) => {
    const now = Date.now();
    if (isBinary || data.toString() !== payload) errors++;
    if (to && now >= from && now < to) {
      count++;
      samples.push(Number((process.hrtime.bigint() - sentAt) / 1000n));
    }
    if (to && now >= to) { finish(); return; }
    send();
  });
  ws.on('error', (e) => { console.error(`node-ws-client: ${e.message}`); errors++; finish(); });
}
