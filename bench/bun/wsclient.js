// Client-side WebSocket echo load with Bun's built-in WebSocket client,
// the same protocol as bench/wsclient_load.c. Prints
//   bun-client msgs/s=<n> p50_us=<n> p99_us=<n> errors=<n>
// Usage: bun wsclient.js URL CONNECTIONS SIZE DURATION_S WARMUP_S
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
  console.log(`bun-client msgs/s=${Math.round(count / secs)} p50_us=${p(0.5)} p99_us=${p(0.99)} errors=${errors}`);
  for (const s of socks) s.close();
  process.exit(errors ? 1 : 0);
}

for (let i = 0; i < n; i++) {
  const ws = new WebSocket(url);
  socks.push(ws);
  let sentAt = 0;
  const send = () => { sentAt = Bun.nanoseconds(); ws.send(payload); };
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
      samples.push(Math.round((Bun.nanoseconds() - sentAt) / 1000));
    }
    if (to && now >= to) { finish(); return; }
    send();
  };
  ws.onerror = () => { console.error('bun-client: error'); errors++; finish(); };
}
