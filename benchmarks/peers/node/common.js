"use strict";
// What both Node peers share: the contract's command line and POST /publish.

const { parseArgs } = require("node:util");

// --host H --port P [--redis URL]; anything else is a usage error (exit 2).
function parseCli(argv) {
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        host: { type: "string", default: "127.0.0.1" },
        port: { type: "string" },
        redis: { type: "string" },
      },
      strict: true,
    });
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new Error("--port must be a port number");
    }
    return { host: values.host, port, redis: values.redis };
  } catch (err) {
    exitUsage(err.message);
  }
}

function exitUsage(message) {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

// A message is {"channel": "<c>", "data": <any JSON>}; null when the body is not a list of them.
function parseMessages(body) {
  let messages;
  try {
    messages = JSON.parse(body);
  } catch {
    return null;
  }
  if (!Array.isArray(messages)) return null;
  for (const m of messages) {
    if (m === null || typeof m !== "object" || typeof m.channel !== "string" || !("data" in m)) {
      return null;
    }
  }
  return messages;
}

function reply(res, status, payload) {
  const body = JSON.stringify(payload);
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(body),
  });
  res.end(body);
}

// An http "request" listener for POST /publish: publish(channel, data) for each message, in
// order, then 200 {"published": n}. Every other request gets 404.
function publishHandler(publish) {
  return (req, res) => {
    if (req.method !== "POST" || req.url !== "/publish") {
      reply(res, 404, { error: "not found" });
      return;
    }
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const messages = parseMessages(Buffer.concat(chunks).toString("utf8"));
      if (messages === null) {
        reply(res, 400, { error: "body must be a JSON array of {channel, data}" });
        return;
      }
      for (const { channel, data } of messages) publish(channel, data);
      reply(res, 200, { published: messages.length });
    });
  };
}

// The publisher keeps one connection open, possibly idle for longer than Node's 5 s default
// between benchmark phases; closing it would race with its next request.
function keepAliveLong(server) {
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 121_000;
}

// SIGTERM/SIGINT end the process with status 0: nothing is buffered that must be flushed.
function exitOnSignals() {
  for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
}

module.exports = { parseCli, exitUsage, publishHandler, keepAliveLong, exitOnSignals };
