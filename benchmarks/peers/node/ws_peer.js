"use strict";
// The "simple" protocol on a plain `ws` server: the idiomatic Node broadcaster.
// Single node only: `ws` has no multi-node mechanism, so --redis exits 2.

const http = require("node:http");
const { WebSocketServer, WebSocket } = require("ws");
const { parseCli, exitUsage, publishHandler, keepAliveLong, exitOnSignals } = require("./common");

const args = parseCli(process.argv.slice(2));
if (args.redis !== undefined) exitUsage("node-ws is single-node: --redis is not supported");

const channels = new Map(); // channel -> Set of sockets

function subscribe(ws, channel) {
  let sockets = channels.get(channel);
  if (sockets === undefined) {
    sockets = new Set();
    channels.set(channel, sockets);
  }
  sockets.add(ws);
  ws.channels.add(channel);
  ws.send(JSON.stringify({ subscribed: channel }));
}

function unsubscribeAll(ws) {
  for (const channel of ws.channels) {
    const sockets = channels.get(channel);
    sockets.delete(ws);
    if (sockets.size === 0) channels.delete(channel);
  }
}

// Serialized once per message; ws writes the same string to every socket.
function publish(channel, data) {
  const sockets = channels.get(channel);
  if (sockets === undefined) return;
  const text = JSON.stringify(data);
  for (const ws of sockets) {
    if (ws.readyState === WebSocket.OPEN) ws.send(text);
  }
}

function onMessage(ws, raw, isBinary) {
  if (isBinary) return;
  let command;
  try {
    command = JSON.parse(raw.toString("utf8"));
  } catch {
    return; // unknown frames are ignored
  }
  if (command !== null && typeof command.subscribe === "string") subscribe(ws, command.subscribe);
}

const server = http.createServer(publishHandler(publish));
keepAliveLong(server);
// The load generator never negotiates permessage-deflate; clientTracking is off because the
// channel map already holds every subscribed socket.
const wss = new WebSocketServer({ server, path: "/ws", perMessageDeflate: false, clientTracking: false });
wss.on("connection", (ws) => {
  ws.channels = new Set();
  ws.on("message", (raw, isBinary) => onMessage(ws, raw, isBinary));
  ws.on("close", () => unsubscribeAll(ws));
  ws.on("error", () => {}); // a reset client is closed by ws; nothing to log per connection
});

exitOnSignals();
server.listen(args.port, args.host);
