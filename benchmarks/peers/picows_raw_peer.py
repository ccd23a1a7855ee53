"""The Python ceiling: picows on uvloop, the "simple" protocol, each frame built once.

No framework, no protocol beyond the contract's: a publish serializes the
message once, builds the whole WebSocket frame once (server frames are
unmasked, so one buffer fits every subscriber) and writes that same buffer to
each subscriber's TCP transport, one write per subscriber. picows has no
public call that sends a pre-built frame (``WSTransport.send`` copies the
payload behind a fresh header on every call), so the frame goes to
``WSTransport.underlying_transport.write``; picows writes whole frames
synchronously, so the raw writes never land inside one of its frames.

picows serves only WebSockets, so ``POST /publish`` has its own port
(``--publish-port``) and a minimal HTTP/1.1 server. Single node only:
``--redis`` exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import struct
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import uvloop
from peer_common import publish_batch
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

WS_PATH = b"/ws"
LISTEN_BACKLOG = 4096  # as wsfleet's listener: connection bursts must not overflow the queue
READ_BUFFER_INIT_SIZE = 1024  # per connection, as wsfleet's: the frames in are tiny subscribes
MAX_HEAD = 64 * 1024  # bytes of request line and headers the publish server accepts

Write = Callable[[bytes], None]


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame carrying ``payload`` (RFC 6455 section 5.2)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


def compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Hub:
    """Channel -> each subscriber's raw write, in subscription order."""

    def __init__(self) -> None:
        self.channels: dict[str, dict[Client, Write]] = {}

    def subscribe(self, client: Client, channel: str, write: Write) -> None:
        self.channels.setdefault(channel, {})[client] = write
        client.channels.add(channel)

    def drop(self, client: Client) -> None:
        for channel in client.channels:
            subscribers = self.channels[channel]
            del subscribers[client]
            if not subscribers:
                del self.channels[channel]
        client.channels.clear()

    def publish(self, channel: str, data: Any) -> None:
        subscribers = self.channels.get(channel)
        if not subscribers:
            return
        frame = text_frame(compact_json(data))
        for write in subscribers.values():
            write(frame)


class Client(WSListener):
    """One WebSocket: subscribes on request, then only receives."""

    __slots__ = ("channels", "hub", "transport", "write")

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.channels: set[str] = set()
        self.transport: WSTransport | None = None
        self.write: Write | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.write = transport.underlying_transport.write

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.TEXT and frame.fin:
            self._on_text(transport, frame.get_payload_as_bytes())
        elif frame.msg_type is WSMsgType.CLOSE:
            # No raw write may follow our close frame.
            self.hub.drop(self)
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def _on_text(self, transport: WSTransport, payload: bytes) -> None:
        try:
            command = json.loads(payload)
        except ValueError:
            return  # unknown frames are ignored
        channel = command.get("subscribe") if isinstance(command, dict) else None
        if isinstance(channel, str) and self.write is not None:
            self.hub.subscribe(self, channel, self.write)
            transport.send(WSMsgType.TEXT, compact_json({"subscribed": channel}))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.hub.drop(self)


# -- POST /publish: a minimal HTTP/1.1 server with keep-alive ------------------


class BadRequest(Exception):
    """The request cannot be parsed; the connection is answered 400 and closed."""


def parse_head(head: bytes) -> tuple[str, str, dict[str, str], bool]:
    """Method, target, lower-cased headers and whether the connection stays open."""
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise BadRequest("bad request line") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise BadRequest("only Content-Length bodies")
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return method, target, headers, keep_alive


def content_length(headers: dict[str, str]) -> int:
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise BadRequest("bad Content-Length") from None
    if length < 0:
        raise BadRequest("bad Content-Length")
    return length


def respond(hub: Hub, method: str, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
    if method != "POST" or target != "/publish":
        return 404, {"error": "not found"}
    messages = publish_batch(body)
    if messages is None:
        return 400, {"error": "body must be a JSON array of {channel, data}"}
    for message in messages:
        hub.publish(message["channel"], message["data"])
    return 200, {"published": len(messages)}


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found"}


def http_response(status: int, payload: dict[str, Any], keep_alive: bool) -> bytes:
    body = compact_json(payload)
    head = (
        f"HTTP/1.1 {status} {REASONS[status]}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode() + body


async def serve_http(hub: Hub, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Requests on one connection, one after the other, until it closes."""
    try:
        keep_alive = True
        while keep_alive:
            head = await reader.readuntil(b"\r\n\r\n")
            try:
                method, target, headers, keep_alive = parse_head(head)
                body = await reader.readexactly(content_length(headers))
            except BadRequest as exc:
                writer.write(http_response(400, {"error": str(exc)}, keep_alive=False))
                break
            status, payload = respond(hub, method, target, body)
            writer.write(http_response(status, payload, keep_alive))
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass  # the publisher went away, or sent more head than MAX_HEAD
    finally:
        writer.close()


# -- process ---------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--publish-port", type=int, required=True)
    parser.add_argument("--redis", help="not supported: picows raw is single-node")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    hub = Hub()

    def route(request: WSUpgradeRequest) -> Client | None:
        # None makes picows answer 404.
        return Client(hub) if request.path.split(b"?", 1)[0] == WS_PATH else None

    ws_server = await ws_create_server(
        route,
        args.host,
        args.port,
        read_buffer_init_size=READ_BUFFER_INIT_SIZE,
        reuse_address=True,
        backlog=LISTEN_BACKLOG,
    )
    http_server = await asyncio.start_server(
        partial(serve_http, hub), args.host, args.publish_port, limit=MAX_HEAD, reuse_address=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    http_server.close()
    ws_server.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.redis is not None:
        print("picows-raw is single-node: --redis is not supported", file=sys.stderr)
        return 2
    uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
