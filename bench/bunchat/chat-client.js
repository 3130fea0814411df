// OUR reconstruction (written for this repository, not Bun's file) of the
// client of Bun's WebSocket chat benchmark (oven-sh/bun,
// bench/websocket-server/chat-client.mjs), following its published
// description: CLIENTS_COUNT clients connect to SERVER?name=NAME and wait
// for the server's first message ("ready"); then every client sends a
// batch of BATCH short text messages at once; when every client has
// received every message of the batch (CLIENTS_COUNT * BATCH *
// CLIENTS_COUNT messages, since the server publishes each one to the whole
// room, sender included), the next batch is sent, at the next tick of a
// DELAY-ms interval (64 ms, as in Bun's client). Each second it prints the
// messages received in that second (divided by the time really elapsed
// since the previous line: a busy client runs its timers late).
//
// Runs in Bun (or any runtime with a global WebSocket: Node >= 22, Deno).
// Environment: SERVER [ws://127.0.0.1:3000/], CLIENTS_COUNT [16],
// BATCH [1600], DELAY [64], DURATION [10] seconds, WARMUP [1] seconds
// (not counted). Output: one line per second on stderr, then on stdout
//   RESULT msgs_per_s=N (median of the per-second counts) mean=N
//          seconds=N batches=N clients=N batch=N
// A message that is not "NAME: text" from a client of this run, or a run
// in which no batch completes, fails with exit status 1.
const env = process.env;
const SERVER = env.SERVER || "ws://127.0.0.1:3000/";
const N = parseInt(env.CLIENTS_COUNT || "", 10) || 16;
const BATCH = parseInt(env.BATCH || "", 10) || 1600;
const DELAY = parseInt(env.DELAY || "", 10) || 64;
const DURATION = Number(env.DURATION || 10);
const WARMUP = Number(env.WARMUP || 1);

const WORDS = ["hi", "good morning", "anyone here?", "lunch at noon", "ok",
  "see you", "pub/sub is fast", "ping", "what's up", "one more message"];
const names = Array.from({ length: N }, (_, i) => `member${i}`);
const nameSet = new Set(names);

function fail(msg) {
  console.error(`chat-client: error: ${msg}`);
  process.exit(1);
}

const clients = [];
await Promise.all(names.map((name, i) => new Promise((resolve, reject) => {
  const ws = new WebSocket(`${SERVER}?name=${name}`);
  clients[i] = ws;
  ws.onmessage = ev => {
    if (ev.data !== "ready") fail(`client ${i}: first message '${ev.data}', want 'ready'`);
    resolve();
  };
  ws.onerror = () => reject(new Error(`client ${i}: connection failed`));
  ws.onclose = () => fail(`client ${i}: closed`);
})));
console.error(`chat-client: ${N} clients ready; batches of ${BATCH} messages per client`);

const perBatch = N * BATCH * N;
let received = 0, remaining = perBatch, batchDone = false, batches = 0;
for (const ws of clients) {
  ws.onmessage = ev => {
    const s = ev.data;
    const k = s.indexOf(": ");
    if (k < 0 || !nameSet.has(s.slice(0, k))) fail(`unexpected message '${s}'`);
    received++;
    if (--remaining === 0) {
      batches++;
      batchDone = true;
      remaining = perBatch;
    } else if (remaining < 0) fail("more messages than were sent");
  };
}

function sendBatch() {
  for (const ws of clients)
    for (let j = 0; j < BATCH; j++) ws.send(WORDS[j % WORDS.length]);
}

const counts = [];
let elapsed = 0;
const start = performance.now();
let last = start;
const tick = setInterval(() => {
  // A busy client runs its timers late: divide by the real time elapsed.
  const now = performance.now();
  const n = Math.round(received * 1000 / (now - last));
  last = now;
  elapsed++;
  received = 0;
  if (elapsed > WARMUP) {
    counts.push(n);
    console.error(`chat-client: ${n} messages per second`);
  }
  if (elapsed >= WARMUP + DURATION) {
    clearInterval(tick);
    clearInterval(pump);
    if (batches === 0) fail("no batch completed");
    const sorted = [...counts].sort((a, b) => a - b);
    const med = sorted.length % 2 ? sorted[(sorted.length - 1) >> 1]
      : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
    const mean = counts.reduce((a, b) => a + b, 0) / counts.length;
    console.log(`RESULT msgs_per_s=${Math.round(med)} mean=${Math.round(mean)} ` +
      `seconds=${counts.length} batches=${batches} clients=${N} batch=${BATCH} ` +
      `wall_s=${((performance.now() - start) / 1000).toFixed(1)}`);
    for (const ws of clients) { ws.onclose = null; ws.close(1000); }
    setTimeout(() => process.exit(0), 200);
  }
}, 1000);
const pump = setInterval(() => {
  if (batchDone) {
    batchDone = false;
    sendBatch();
  }
}, DELAY);
sendBatch();
