// A Node `ws` server for the client's interop tests (test_interop.py).
// Prints "listening on http://127.0.0.1:PORT" and serves, by path:
//   /echo    every message back as it came (permessage-deflate offered)
//   /frag    "frag" -> one text message sent in three fragments
//   /close   "close" -> close(4003, "node")
//   /ping    "ping-me" -> ping("node-ping"); a pong -> "got-pong:<data>"
//   /proto   the second subprotocol offered, sent back as "proto:<name>"
// The `ws` package is tests/interop's (npm ci there, .ci/install-node-deps).
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'interop', 'package.json'));
const { WebSocketServer } = require('ws');

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate: { threshold: 0 },
  handleProtocols: (protocols) => [...protocols][1] ?? false,
});
wss.on('connection', (ws, req) => {
  const route = req.url.split('?')[0];
  if (route === '/proto') ws.send(`proto:${ws.protocol}`);
  ws.on('pong', (d) => ws.send(`got-pong:${d}`));
  ws.on('message', (data, isBinary) => {
    const text = isBinary ? null : data.toString();
    if (route === '/frag' && text === 'frag') {
      ws.send('one-', { fin: false });
      ws.send('two-', { fin: false });
      ws.send('three', { fin: true });
    } else if (route === '/close' && text === 'close') {
      ws.close(4003, 'node');
    } else if (route === '/ping' && text === 'ping-me') {
      ws.ping('node-ping');
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
});
wss.on('listening', () => {
  console.log(`node_server: listening on http://127.0.0.1:${wss.address().port}`);
});
process.on('SIGTERM', () => {
  for (const c of wss.clients) c.terminate();
  wss.close(() => process.exit(0));
});
