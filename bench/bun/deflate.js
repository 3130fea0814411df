// Bun.serve WebSocket echo with permessage-deflate: the baseline that
// bench/deflate.sh measures talon's compression modes against. Like
// bench/bun/echo.js, but `perMessageDeflate: true` (Bun's default choice of
// compressor and decompressor). /ws upgrades and sends every message back
// as it came.
// Bun's ws.send(message) does not compress unless asked to: its second
// argument, `compress`, defaults to false. With BUN_COMPRESS=1 (the default
// here) the echo is ws.send(message, true), compressed when the extension
// was negotiated, which is what talon's tl_ws_send() does for messages of
// at least 128 bytes; with BUN_COMPRESS=0 it is ws.send(message), so only
// the client's messages are compressed (inflated by Bun), not the echoes.
// BUN_DEFLATE=dedicated gives every socket its own compressor and
// decompressor (`perMessageDeflate: { compress: "dedicated", decompress:
// "dedicated" }`: the sliding window is kept from message to message, like
// talon's TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR); the default,
// `true`, is Bun's shared compressor (no context takeover).
// Port: first argument, else $PORT, else 3000. Host: $HOST, else 127.0.0.1.
const port = Number(process.argv[2] || process.env.PORT || 3000);
const hostname = process.env.HOST || "127.0.0.1";
const compress = (process.env.BUN_COMPRESS ?? "1") !== "0";
const mode = process.env.BUN_DEFLATE || "shared";
if (mode !== "shared" && mode !== "dedicated") {
  throw new Error(`BUN_DEFLATE=${mode}: shared or dedicated`);
}
const perMessageDeflate =
  mode === "dedicated" ? { compress: "dedicated", decompress: "dedicated" } : true;

const server = Bun.serve({
  port,
  hostname,
  fetch(req, server) {
    if (new URL(req.url).pathname === "/ws") {
      if (server.upgrade(req)) return; // Bun sends the 101
      return new Response("Upgrade Required", { status: 426 });
    }
    return new Response("Not Found", { status: 404 });
  },
  websocket: {
    perMessageDeflate,
    maxPayloadLength: 64 * 1024 * 1024,
    backpressureLimit: 64 * 1024 * 1024,
    idleTimeout: 960, // the memory test keeps 2000 sockets idle for a while
    message(ws, message) {
      ws.send(message, compress); // string -> text frame, Buffer -> binary frame
    },
  },
});

console.log(`bun deflate echo (${mode}, compress=${compress}) listening on http://${server.hostname}:${server.port}`);
