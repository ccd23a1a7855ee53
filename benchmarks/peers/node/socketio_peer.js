"use strict";
// The "socket.io" protocol on a socket.io Server attached to a plain http server, WebSocket
// transport only. With --redis URL, nodes share broadcasts through @socket.io/redis-adapter.

const http = require("node:http");
const { Server } = require("socket.io");
const { parseCli, publishHandler, keepAliveLong, exitOnSignals } = require("./common");

const args = parseCli(process.argv.slice(2));

// socket.io serializes a room broadcast once and writes it to every member.
function publish(channel, data) {
  io.to(channel).emit("message", data);
}

// socket.io only intercepts /socket.io/; every other request reaches the publish handler.
const server = http.createServer(publishHandler(publish));
keepAliveLong(server);
const io = new Server(server, {
  transports: ["websocket"],
  serveClient: false,
  cors: { origin: "*" },
});

io.on("connection", (socket) => {
  socket.on("subscribe", (channel, ack) => {
    if (typeof channel !== "string") return;
    socket.join(channel);
    if (typeof ack === "function") ack(channel);
  });
});

// The adapter publishes every broadcast on one Redis connection and receives the others' on a
// second one (pattern subscription), both owned by this process.
async function useRedis(url) {
  const { createClient } = require("redis");
  const { createAdapter } = require("@socket.io/redis-adapter");
  const pubClient = createClient({ url });
  const subClient = pubClient.duplicate();
  for (const client of [pubClient, subClient]) {
    client.on("error", (err) => process.stderr.write(`redis: ${err.message}\n`));
  }
  await Promise.all([pubClient.connect(), subClient.connect()]);
  io.adapter(createAdapter(pubClient, subClient));
}

async function main() {
  exitOnSignals();
  if (args.redis !== undefined) await useRedis(args.redis);
  server.listen(args.port, args.host);
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
