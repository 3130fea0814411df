// Interop: the `ws` npm client against talon's echo example.
// Run: ECHO_BIN=build/examples/echo node --test ws_node.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { startEcho } from './server.mjs';

const KiB = 1024;
const MiB = 1024 * KiB;
const T = { timeout: 60_000 };

let server;
before(async () => { server = await startEcho(); });
after(async () => {
  if (!server) return;
  const alive = server.alive();
  const r = await server.stop();
  if (r.stderr) console.log(r.stderr.replace(/^/gm, '# server stderr: '));
  // A crash of the server during the suite is a failure in itself.
  assert.ok(alive, `echo server died during the tests: ${JSON.stringify(r)}`);
});

// A client whose messages are read in order with next().
class Client {
  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiters = [];
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        for (const w of this.waiters.splice(0)) w.reject(new Error(`closed ${code} ${reason}`));
      });
    });
    ws.on('message', (data, isBinary) => {
      const m = { data, isBinary };
      const w = this.waiters.shift();
      if (w) w.resolve(m); else this.queue.push(m);
    });
    ws.on('error', (e) => { this.error = e; });
  }
  next() {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
  close(code, reason) { this.ws.close(code, reason); return this.closed; }
  // Close when the test ends; never throws.
  async dispose() {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close();
    const t = setTimeout(() => this.ws.terminate(), 2000);
    await this.closed;
    clearTimeout(t);
  }
}

async function connect(opts = { perMessageDeflate: false }) {
  const ws = new WebSocket(server.wsUrl, opts);
  const c = new Client(ws);
  c.response = await new Promise((resolve, reject) => {
    let res;
    ws.once('upgrade', (r) => { res = r; });
    ws.once('open', () => resolve(res));
    ws.once('error', reject);
    ws.once('unexpected-response', (req, r) => reject(new Error(`HTTP ${r.statusCode}`)));
  });
  return c;
}

async function withClient(fn, opts) {
  const c = await connect(opts);
  try { return await fn(c); } finally { await c.dispose(); }
}

// Deterministic text of exactly `n` bytes with multi-byte UTF-8 sprinkled
// in (cut at a character boundary, padded with ASCII).
function text(n) {
  const unit = 'talon echo ✓ ü €😀 ';
  const b = Buffer.from(unit.repeat(Math.ceil(n / Buffer.byteLength(unit))));
  let end = Math.min(n, b.length);
  while (end > 0 && end < b.length && (b[end] & 0xc0) === 0x80) end--;
  return b.subarray(0, end).toString('utf8') + 'x'.repeat(n - end);
}

async function roundTripText(c, s) {
  c.ws.send(s);
  const m = await c.next();
  assert.equal(m.isBinary, false, 'text must come back as text');
  assert.equal(m.data.length, Buffer.byteLength(s), 'echoed length');
  assert.ok(m.data.toString('utf8') === s, 'echoed text differs');
}

async function roundTripBinary(c, b) {
  c.ws.send(b);
  const m = await c.next();
  assert.equal(m.isBinary, true, 'binary must come back as binary');
  assert.equal(m.data.length, b.length, 'echoed length');
  assert.ok(Buffer.compare(m.data, b) === 0, 'echoed bytes differ');
}

test('handshake: 101, no extension accepted, no subprotocol', T, () => withClient(async (c) => {
  assert.equal(c.response.statusCode, 101);
  assert.equal(c.response.headers['sec-websocket-extensions'], undefined);
  assert.equal(c.ws.extensions, '');
  assert.equal(c.ws.protocol, '');
}));

for (const n of [0, 1, 125, 126, KiB, 64 * KiB, 65536 + 1, 5 * MiB]) {
  test(`text ${n} bytes`, T, () => withClient((c) => roundTripText(c, text(n))));
  test(`binary ${n} bytes`, T, () => withClient((c) => roundTripBinary(c, randomBytes(n))));
}

test('text and binary alternate on one socket', T, () => withClient(async (c) => {
  for (let i = 0; i < 20; i++) {
    if (i % 2) await roundTripBinary(c, randomBytes(i * 997));
    else await roundTripText(c, text(i * 991));
  }
}));

test('fragmented text message (fin:false then fin:true)', T, () => withClient(async (c) => {
  c.ws.send('hello, ', { fin: false });
  c.ws.send('wörld ', { fin: false });
  c.ws.send('😀', { fin: true });
  const m = await c.next();
  assert.equal(m.isBinary, false);
  assert.equal(m.data.toString(), 'hello, wörld 😀');
}));

test('fragmented text with a multi-byte character split across fragments', T, () => withClient(async (c) => {
  const b = Buffer.from('a😀b');           // 61 f0 9f 98 80 62
  c.ws.send(b.subarray(0, 3), { binary: false, fin: false });
  c.ws.send(b.subarray(3), { binary: false, fin: true });
  const m = await c.next();
  assert.equal(m.isBinary, false);
  assert.equal(m.data.toString(), 'a😀b');
}));

test('fragmented binary message, 100 fragments, with a ping in between', T, () => withClient(async (c) => {
  const parts = Array.from({ length: 100 }, (_, i) => randomBytes(i * 37));
  const pong = new Promise((resolve) => c.ws.once('pong', resolve));
  parts.forEach((p, i) => {
    c.ws.send(p, { binary: true, fin: i === parts.length - 1 });
    if (i === 50) c.ws.ping(Buffer.from('mid-message'));
  });
  const m = await c.next();
  assert.equal(m.isBinary, true);
  assert.ok(Buffer.compare(m.data, Buffer.concat(parts)) === 0, 'reassembled bytes differ');
  assert.equal((await pong).toString(), 'mid-message');
}));

test('large fragmented binary message (5 x 1 MiB)', T, () => withClient(async (c) => {
  const parts = Array.from({ length: 5 }, () => randomBytes(MiB));
  parts.forEach((p, i) => c.ws.send(p, { fin: i === 4 }));
  const m = await c.next();
  assert.equal(m.isBinary, true);
  assert.ok(Buffer.compare(m.data, Buffer.concat(parts)) === 0);
}));

test('ping gets a pong with the same payload', T, () => withClient(async (c) => {
  for (const payload of [Buffer.alloc(0), Buffer.from('abc'), randomBytes(125)]) {
    const pong = new Promise((resolve) => c.ws.once('pong', resolve));
    c.ws.ping(payload);
    const got = await pong;
    assert.ok(Buffer.compare(got, payload) === 0, `pong payload for ${payload.length} bytes`);
  }
  await roundTripText(c, 'still open after pings');
}));

test('close with 4001 and a reason: the server echoes the code', T, async () => {
  const c = await connect();
  await roundTripText(c, 'before close');
  const r = await c.close(4001, 'done here');
  assert.equal(r.code, 4001);
  // RFC 6455 5.5.1: the reason in the reply is optional; if any, it is ours.
  assert.ok(r.reason === '' || r.reason === 'done here', `reason ${JSON.stringify(r.reason)}`);
});

test('close with 1000 and no reason', T, async () => {
  const c = await connect();
  const r = await c.close(1000);
  assert.equal(r.code, 1000);
});

test('1000 messages come back in order', T, () => withClient(async (c) => {
  const N = 1000;
  for (let i = 0; i < N; i++) {
    if (i % 3 === 2) c.ws.send(Buffer.from(`bin ${i}`));
    else c.ws.send(`msg ${i} ` + 'x'.repeat(i % 200));
  }
  for (let i = 0; i < N; i++) {
    const m = await c.next();
    if (i % 3 === 2) {
      assert.equal(m.isBinary, true, `message ${i} kind`);
      assert.equal(m.data.toString(), `bin ${i}`);
    } else {
      assert.equal(m.isBinary, false, `message ${i} kind`);
      assert.equal(m.data.toString(), `msg ${i} ` + 'x'.repeat(i % 200));
    }
  }
}));

test('two clients concurrently each get only their own echoes', T, async () => {
  const [a, b] = await Promise.all([connect(), connect()]);
  try {
    const N = 300;
    const run = async (c, tag) => {
      const sent = [];
      for (let i = 0; i < N; i++) {
        const s = `${tag}:${i}:` + 'y'.repeat((i * 31) % 3000);
        sent.push(s);
        c.ws.send(s);
        if (i % 50 === 0) c.ws.send(randomBytes(256 * KiB));
      }
      for (let i = 0; i < N; i++) {
        const m = await c.next();
        assert.equal(m.isBinary, false, `${tag} message ${i}`);
        assert.equal(m.data.toString(), sent[i]);
        if (i % 50 === 0) {
          const bin = await c.next();
          assert.equal(bin.isBinary, true);
          assert.equal(bin.data.length, 256 * KiB);
        }
      }
    };
    await Promise.all([run(a, 'A'), run(b, 'B')]);
  } finally {
    await Promise.all([a.dispose(), b.dispose()]);
  }
});

test('default client settings (permessage-deflate offered): accepted, works compressed', T, async () => {
  const c = await connect({});   // ws offers permessage-deflate by default
  try {
    // examples/echo runs a dedicated compressor and decompressor.
    assert.match(c.response.headers['sec-websocket-extensions'] || '', /^permessage-deflate/,
      'the server accepts permessage-deflate');
    assert.match(c.ws.extensions, /permessage-deflate/);
    await roundTripText(c, 'hello with default settings');
    await roundTripText(c, text(64 * KiB));
    await roundTripBinary(c, randomBytes(MiB));
    c.ws.send('frag-', { fin: false });
    c.ws.send('mented', { fin: true });
    assert.equal((await c.next()).data.toString(), 'frag-mented');
    const r = await c.close(4001, 'bye');
    assert.equal(r.code, 4001);
  } finally {
    await c.dispose();
  }
});

test('text that is not valid UTF-8 is closed with 1007', T, async () => {
  const c = await connect();
  try {
    c.ws.send(Buffer.from([0x61, 0xff, 0xfe, 0x62]), { binary: false });
    const r = await c.closed;
    assert.equal(r.code, 1007);
  } finally {
    await c.dispose();
  }
});

test('a message over max_payload (64 MiB) is closed with 1009', T, async () => {
  const c = await connect();
  try {
    c.ws.send(Buffer.alloc(64 * MiB + 1, 0x41));
    const r = await c.closed;
    assert.equal(r.code, 1009);
  } finally {
    await c.dispose();
  }
});

test('a message of exactly max_payload (64 MiB) is echoed', T, () => withClient(async (c) => {
  const b = Buffer.alloc(64 * MiB, 0x5a);
  b.writeUInt32BE(0xdeadbeef, 0);
  b.writeUInt32BE(0xcafebabe, b.length - 4);
  await roundTripBinary(c, b);
}));

test('client that reads late: 16 x 1 MiB sent while not reading, all echoed', T, () => withClient(async (c) => {
  const sock = c.ws._socket;            // ws exposes its net.Socket
  sock.pause();
  const parts = Array.from({ length: 16 }, () => randomBytes(MiB));
  for (const p of parts) c.ws.send(p);
  await new Promise((r) => setTimeout(r, 300));
  sock.resume();
  for (const [i, p] of parts.entries()) {
    const m = await c.next();
    assert.ok(Buffer.compare(m.data, p) === 0, `message ${i}`);
  }
}));

test('50 clients at once', T, async () => {
  const clients = await Promise.all(Array.from({ length: 50 }, () => connect()));
  try {
    await Promise.all(clients.map(async (c, k) => {
      for (let i = 0; i < 10; i++) await roundTripText(c, `client ${k} message ${i}`);
      await roundTripBinary(c, randomBytes(10 * KiB));
    }));
  } finally {
    await Promise.all(clients.map((c) => c.dispose()));
  }
});

// Its own server: a crash here (e.g. SIGPIPE on a write to a reset
// connection) must not take the other tests down with it.
test('clients vanish mid-message and mid-echo: the server survives', T, async () => {
  const own = await startEcho();
  const open = async () => {
    const ws = new WebSocket(own.wsUrl, { perMessageDeflate: false });
    ws.on('error', () => {});
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('close', (code) => reject(new Error(`connect failed (${code}); ${own.alive() ? 'server up' : died()}`)));
    });
    return ws;
  };
  const gone = (ws) => new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) resolve(); else ws.once('close', resolve);
  });
  const died = () => `echo died: exit code ${own.child.exitCode}, signal ${own.child.signalCode}; ` +
                     `stderr: ${own.stderr()}`;
  try {
    for (let round = 0; round < 5; round++) {
      // Half a fragmented message, then TCP gone.
      const a = await open();
      a.send(randomBytes(1000), { fin: false });
      a.terminate();
      await gone(a);
      // An 8 MiB message, then TCP gone after `ms` while it is still being
      // received or echoed; once more with the client not reading (so the
      // server has a backlog).
      for (const [ms, paused] of [[0, false], [5, false], [20, false], [50, false], [100, true]]) {
        const b = await open();
        if (paused) b._socket.pause();
        b.send(randomBytes(8 * MiB));
        await new Promise((r) => setTimeout(r, ms));
        b.terminate();
        await gone(b);
        await new Promise((r) => setTimeout(r, 50));
        assert.ok(own.alive(), `round ${round}, 8 MiB then gone after ${ms} ms` +
                               `${paused ? ' (not reading)' : ''}: ${died()}`);
      }
      await new Promise((r) => setTimeout(r, 50));
      assert.ok(own.alive(), `round ${round}: ${died()}`);
    }
    const c = await open();
    const echoed = new Promise((resolve) => c.once('message', (d) => resolve(d.toString())));
    c.send('still serving');
    assert.equal(await echoed, 'still serving');
    c.close();
    await gone(c);
    assert.ok(own.alive(), died());
  } finally {
    await own.stop();
  }
});

test('plain GET /ws (no upgrade) gets 426', T, async () => {
  const r = await fetch(`${server.url}/ws`);
  assert.equal(r.status, 426);
  await r.arrayBuffer();
});

test('the server is still up after the suite', T, () => withClient(async (c) => {
  assert.ok(server.alive());
  await roundTripText(c, 'bye');
}));
