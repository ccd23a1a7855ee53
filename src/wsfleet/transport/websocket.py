"""The public WebSocket listener: handshake gate, frames in, frames out.

This is a thin layer over picows. It decides before the upgrade whether a
connection is welcome (the gate answers with an HTTP status and
``Retry-After`` when it is not, so clients back off and a load balancer may
try elsewhere), picks the wire format from the subprotocol, and hands frames
to a :class:`~wsfleet.core.client.ClientSession`. It holds no protocol logic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)

from wsfleet.core.admission import Admission, Refusal
from wsfleet.core.client import ClientSession, SessionContext
from wsfleet.core.client_ip import TrustedProxies
from wsfleet.protocol.codec import Codec, get_codec
from wsfleet.transport.peer import create_server

log = logging.getLogger("wsfleet.transport")

WEBSOCKET_PATH = b"/connection/websocket"
PROTOBUF_SUBPROTOCOL = "centrifuge-protobuf"

# A small initial read buffer: most commands are tiny, and the buffer is
# allocated per connection (it grows when a larger frame arrives). picows 2.3
# allocates at least 2048 bytes whatever this asks; with its 1024-byte write
# buffer that is 3 KB of an idle connection's 8 (docs/topics/performance.md).
READ_BUFFER_INIT_SIZE = 1024


Gate = Callable[[str], Refusal | None]
"""Decides whether a handshake from a client address may proceed; None lets it through."""


class Connection(WSListener):
    """One WebSocket: adapts picows callbacks to a session."""

    __slots__ = (
        "_admission",
        "_fragments",
        "_max_size",
        "_msg_type",
        "_open",
        "codec",
        "ctx",
        "ip",
        "session",
        "transport",
    )

    def __init__(
        self,
        ctx: SessionContext,
        codec: Codec,
        ip: str,
        admission: Admission,
        open_connections: set[Connection],
    ) -> None:
        self.ctx = ctx
        self._open = open_connections
        self.codec = codec
        self.ip = ip
        self._admission = admission
        self._max_size = ctx.client.max_message_size
        self._msg_type = WSMsgType.BINARY if codec.binary else WSMsgType.TEXT
        self._fragments: bytearray | None = None
        self.transport: WSTransport | None = None
        self.session: ClientSession | None = None

    # -- picows callbacks ------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        _forget_headers(transport)
        self._admission.opened(self.ip)
        self._open.add(self)
        self.session = ClientSession(self.ctx, self, self.codec, remote=self.ip)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if transport.is_close_frame_sent:
            # Closing, by the session or by picows after a protocol error (an
            # oversized frame, say): nothing more from the peer is processed.
            # picows may still hand over the rest of the frame it refused.
            if msg_type is WSMsgType.CLOSE:
                transport.disconnect()
            return
        session = self.session
        if session is None:
            return
        if msg_type is WSMsgType.TEXT or msg_type is WSMsgType.BINARY:
            if msg_type is not self._msg_type:
                session.on_wrong_frame_type()
                return
            if frame.fin:
                session.on_frame(frame.get_payload_as_bytes())
            else:
                self._fragments = bytearray(frame.get_payload_as_memoryview())
        elif msg_type is WSMsgType.CONTINUATION:
            self._continuation(session, frame)
        elif msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def _continuation(self, session: ClientSession, frame: WSFrame) -> None:
        parts = self._fragments
        if parts is None:
            self.close(1002, "unexpected continuation")
            return
        parts += frame.get_payload_as_memoryview()
        if len(parts) > self._max_size:
            self._fragments = None
            self.close(1009, "message too big")
            return
        if frame.fin:
            self._fragments = None
            session.on_frame(bytes(parts))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._admission.closed(self.ip)
        self._open.discard(self)
        _count_oversized(transport, self.ctx)
        if self.session is not None:
            self.session.on_transport_closed()

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.pause_writing()

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.resume_writing()

    # -- what the session uses --------------------------------------------------

    def send_frame(self, frame: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_close_frame_sent:
            transport.send(self._msg_type, frame)

    def close(self, code: int, reason: str) -> None:
        transport = self.transport
        if transport is None:
            return
        if not transport.is_close_frame_sent:
            transport.send_close(WSCloseCode(code), reason.encode())
        transport.disconnect()


def _is_upgrade(request: WSUpgradeRequest) -> bool:
    headers = request.headers
    upgrade = headers.get("Upgrade", "").lower()
    return upgrade == "websocket" and bool(headers.get("Sec-WebSocket-Key"))


def _forget_headers(transport: WSTransport) -> None:
    # picows keeps the upgrade request and response for the connection's life.
    # Nothing reads their headers after the upgrade (the gate has had what it
    # needs), and a browser's run to kilobytes (cookies, user agent): with
    # thousands of connections a node would hold megabytes of them for nothing.
    for message in (transport.request, transport.response):
        if message is not None:
            message.headers.clear()


def _count_oversized(transport: WSTransport, ctx: SessionContext) -> None:
    # A frame over client.max_message_size is refused with 1009, by picows
    # (a single frame) or by us (fragments): either way the close sent says so.
    handshake = transport.close_handshake
    sent = handshake.sent if handshake is not None else None
    if sent is not None and sent.code == WSCloseCode.MESSAGE_TOO_BIG:
        ctx.stats.limit_hits["message_size"] += 1


class WebSocketServer:
    """The public listener. ``gate`` is consulted for every handshake.

    ``admission`` counts the upgraded connections by client address, which
    ``proxies`` resolve from ``X-Forwarded-For`` when the peer is trusted.
    """

    def __init__(
        self, ctx: SessionContext, gate: Gate, *, admission: Admission, proxies: TrustedProxies
    ) -> None:
        self._ctx = ctx
        self._gate = gate
        self._admission = admission
        self._proxies = proxies
        self._server: asyncio.Server | None = None
        self.connections: set[Connection] = set()
        """Every upgraded connection still open, whether it sent connect or not."""

    def _factory(
        self, request: WSUpgradeRequest, peer: str
    ) -> WSListener | WSUpgradeResponseWithListener | None:
        path = request.path.split(b"?", 1)[0]
        if path != WEBSOCKET_PATH:
            return None  # picows answers 404
        if not _is_upgrade(request):
            # A health check or a scanner: answered before the gate, so it
            # spends none of the connection rate.
            response = WSUpgradeResponse.create_error_response(400, b"WebSocket upgrade expected\n")
            return WSUpgradeResponseWithListener(response, None)
        ip = self._client_ip(request, peer)
        refusal = self._gate(ip)
        if refusal is not None:
            headers = {"Retry-After": str(max(1, round(refusal.retry_after)))}
            response = WSUpgradeResponse.create_error_response(
                refusal.status, refusal.reason.encode() + b"\n", headers
            )
            return WSUpgradeResponseWithListener(response, None)
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        if PROTOBUF_SUBPROTOCOL in (p.strip() for p in offered.split(",")):
            response = WSUpgradeResponse.create_101_response(
                {"Sec-WebSocket-Protocol": PROTOBUF_SUBPROTOCOL}
            )
            return WSUpgradeResponseWithListener(response, self._connection("protobuf", ip))
        return self._connection("json", ip)

    def _connection(self, codec: str, ip: str) -> Connection:
        return Connection(self._ctx, get_codec(codec), ip, self._admission, self.connections)

    def sessions(self) -> list[ClientSession]:
        """The sessions of every open connection, connected or still connecting."""
        return [c.session for c in self.connections if c.session is not None]

    def _client_ip(self, request: WSUpgradeRequest, peer: str) -> str:
        if not self._proxies:
            return peer
        # Repeated header lines are one list, in order (RFC 9110): a proxy that
        # adds its own line must not leave the client's forged first line in charge.
        lines = request.headers.getall("X-Forwarded-For", [])
        return self._proxies.client_ip(peer, ",".join(lines) or None)

    async def start(self, host: str, port: int) -> list[tuple[str, int]]:
        """Listen; return the bound addresses (port 0 picks a free one)."""
        self._server = await create_server(
            self._factory,
            host,
            port,
            max_frame_size=self._ctx.client.max_message_size,
            read_buffer_init_size=READ_BUFFER_INIT_SIZE,
            handshake_timeout=10,
            logger_name="wsfleet.transport.picows",
        )
        return [s.getsockname()[:2] for s in self._server.sockets]

    def stop_listening(self) -> None:
        """Stop accepting new TCP connections; open ones are untouched."""
        if self._server is not None:
            self._server.close()
            self._server = None
