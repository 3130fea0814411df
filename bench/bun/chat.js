// Bun.serve chat room on pub/sub: the baseline that bench/chat.sh measures
// talon's bench/chat_server.c against (the "16 clients in one room"
// benchmark of Bun's docs). /chat upgrades; `open` subscribes the socket to
// "room" and every message is published to "room" as it came (string ->
// text, Buffer -> binary). ws.publish() skips the sender (publishToSelf is
// off), so every other member receives it. Anything else gets a 404.
// Port: first argument, else $PORT, else 3000. Host: $HOST, else 127.0.0.1.
const port = Number(process.argv[2] || process.env.PORT || 3000);
const hostname = process.env.HOST || "127.0.0.1";

const server = Bun.serve({
  port,
  hostname,
  fetch(req, server) {
    if (new URL(req.url).pathname === "/chat") {
      if (server.upgrade(req)) return; // Bun sends the 101
      return new Response("Upgrade Required", { status: 426 });
    }
    return new Response("Not Found", { status: 404 });
  },
  websocket: {
    perMessageDeflate: false,
    // Same limits as chat_server.c (64 MiB), so nothing is dropped.
    maxPayloadLength: 64 * 1024 * 1024,
    backpressureLimit: 64 * 1024 * 1024,
    open(ws) {
      ws.subscribe("room");
    },
    message(ws, message) {
      ws.publish("room", message);
    },
  },
});

console.log(`bun chat listening on http://${server.hostname}:${server.port}`);
