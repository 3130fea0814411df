// Bun.serve hello world: the baseline that bench/http.sh measures talon against.
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
  fetch() {
    return new Response("Hello World", {
      headers: { "Content-Type": "text/plain" },
    });
  },
});

console.log(`bun hello listening on http://${server.hostname}:${server.port}`);
