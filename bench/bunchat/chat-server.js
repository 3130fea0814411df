// Bun.serve side of bench/chat.sh: the chat room protocol of Bun's own
// WebSocket benchmark (oven-sh/bun, bench/websocket-server), written here
// for this repository (not a copy of Bun's chat-server.bun.js):
//   - any path upgrades; the client's name is ?name=, else "Client #N";
//   - open subscribes the socket to "room"; once CLIENTS_COUNT sockets are
//     open, "ready" is published to the room 100 ms later (the start
//     signal);
//   - a message M from NAME is published to the room as text "NAME: M",
//     sender included (publishToSelf);
//   - a close frees a place, so the next CLIENTS_COUNT connections start a
//     new run.
// Settings as in Bun's benchmark (perMessageDeflate off), plus a 64 MiB
// backpressure limit, the same as bench/chat_server.c, so that no publish
// is dropped. Port: first argument, else $PORT, else 3000. Host: $HOST,
// else 127.0.0.1. CLIENTS_COUNT: default 16. REUSE_PORT=1: listen with
// reusePort (SO_REUSEPORT), so that several processes share the port, each
// with its own room (bench/workers.sh shows what that loses). DEFLATE=1:
// perMessageDeflate on (Bun's shared compressor and decompressor) and every
// message published with compress set (publishText's third argument), the
// publish side of bench/chat.sh DEFLATE=1.
const port = Number(process.argv[2] || process.env.PORT || 3000);
const hostname = process.env.HOST || "127.0.0.1";
const expected = parseInt(process.env.CLIENTS_COUNT || "", 10) || 16;
const deflate = process.env.DEFLATE === "1";

let waiting = expected;
let joined = 0;
let failed = 0;

// TLS_CERT and TLS_KEY (PEM files): serve HTTPS/WSS on the port instead.
const tls = process.env.TLS_CERT
  ? { tls: { cert: Bun.file(process.env.TLS_CERT), key: Bun.file(process.env.TLS_KEY) } }
  : {};

const server = Bun.serve({
  port,
  hostname,
  ...tls,
  reusePort: process.env.REUSE_PORT === "1",
  fetch(req, srv) {
    const name = new URL(req.url).searchParams.get("name") || `Client #${joined}`;
    joined++;
    if (srv.upgrade(req, { data: { name } })) return;
    return new Response("WebSocket upgrade expected", { status: 400 });
  },
  websocket: {
    perMessageDeflate: deflate,
    publishToSelf: true,
    backpressureLimit: 64 * 1024 * 1024,
    open(ws) {
      ws.subscribe("room");
      if (--waiting === 0) {
        console.log(`chat: all ${expected} clients connected`);
        setTimeout(() => {
          console.log('chat: publishing "ready"');
          server.publish("room", "ready");
        }, 100);
      }
    },
    message(ws, msg) {
      // 0: dropped for every subscriber (-1, backpressure, still queued).
      if (ws.publishText("room", `${ws.data.name}: ${msg}`, deflate) === 0 && failed++ === 0)
        console.error("chat: warning: a publish was dropped");
    },
    close() {
      waiting++;
    },
  },
});

console.log(`chat: waiting for ${expected} clients; listening on http://${server.hostname}:${server.port}`);
