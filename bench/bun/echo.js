// Bun.serve WebSocket echo: the baseline that bench/ws.sh measures talon's
// examples/echo against. /ws upgrades and sends every message back as it
// came (text as text, binary as binary); anything else gets a 404.
// Port: first argument, else $PORT, else 3000. Host: $HOST, else 127.0.0.1.
const port = Number(process.argv[2] || process.env.PORT || 3000);
const hostname = process.env.HOST || "127.0.0.1";

// TLS_CERT and TLS_KEY (PEM files): serve HTTPS/WSS on the port instead.
const tls = process.env.TLS_CERT
  ? { tls: { cert: Bun.file(process.env.TLS_CERT), key: Bun.file(process.env.TLS_KEY) } }
  : {};

const server = Bun.serve({
  port,
  hostname,
  ...tls,
  fetch(req, server) {
    if (new URL(req.url).pathname === "/ws") {
      if (server.upgrade(req)) return; // Bun sends the 101
      return new Response("Upgrade Required", { status: 426 });
    }
    return new Response("Not Found", { status: 404 });
  },
  websocket: {
    perMessageDeflate: false,
    // Same limits as examples/echo (64 MiB), so 64 KiB messages and more pass.
    maxPayloadLength: 64 * 1024 * 1024,
    backpressureLimit: 64 * 1024 * 1024,
    message(ws, message) {
      ws.send(message); // string -> text frame, Buffer -> binary frame
    },
  },
});

console.log(`bun echo listening on http://${server.hostname}:${server.port}`);
