// Socket.IO side of bench/redis.sh: the chat room of bench/chat_server.c
// (every message M from NAME goes to the whole room, the sender included,
// as "NAME: M") on Socket.IO 4, with @socket.io/redis-adapter carrying the
// room to the other Node processes through Redis. Written for this
// repository.
//   - WebSocket transport only (the client, bench/chat_load.c -S, connects
//     with transport=websocket; no HTTP long-polling), perMessageDeflate
//     off (as talon's and Bun's benchmark servers);
//   - the client's name is the query's `name`; every socket joins "room";
//   - the event "msg" with a string M: io.to("room").emit("msg", NAME: M).
// Port: first argument, else $PORT, else 3000. Host: $HOST, else
// 127.0.0.1. REDIS_URL (redis://HOST:PORT): the adapter's Redis; unset:
// this process only.
const { createServer } = require('node:http');
const { Server } = require('socket.io');

const port = Number(process.argv[2] || process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';

async function main() {
  const http = createServer();
  const io = new Server(http, {
    transports: ['websocket'],
    perMessageDeflate: false,
    maxHttpBufferSize: 1 << 20,
    serveClient: false,
  });
  if (process.env.REDIS_URL) {
    const { createClient } = require('redis');
    const { createAdapter } = require('@socket.io/redis-adapter');
    const pub = createClient({ url: process.env.REDIS_URL });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
  }
  io.on('connection', (socket) => {
    const name = String(socket.handshake.query.name || socket.id);
    socket.join('room');
    socket.on('msg', (m) => {
      if (typeof m === 'string') io.to('room').emit('msg', `${name}: ${m}`);
    });
  });
  http.listen(port, host, () => {
    console.log(`listening on http://${host}:${http.address().port}`);
  });
  const stop = () => io.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  console.error(`sio chat-server: ${e.stack || e}`);
  process.exit(1);
});
