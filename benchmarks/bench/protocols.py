"""The three client protocols the load generator speaks, as small state machines.

Every published message is compact JSON ``{"t": <ns>, "s": <seq>, "p": "x…"}`` in every
protocol, so a message is counted by the occurrences of its key ``"s"`` in a frame: a
wsfleet frame may carry several (the server coalesces pushes), a peer frame one. Only
*probe* connections parse the timestamps (latency) and only *tracking* connections the
sequence numbers (loss): the rest must stay cheap so that one load generator core can
keep up with one server core.

- :class:`WsfleetJson`: the Centrifugo JSON protocol (connect, subscribe with recovery,
  ``{}`` pings answered with ``{}``).
- :class:`SocketIO`: Engine.IO 4 / Socket.IO 5 over the WebSocket transport.
- :class:`Simple`: ``{"subscribe": c}`` → ``{"subscribed": c}``, then one frame per message.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from benchmarks.bench.worker import Conn

__all__ = ["PROTOCOLS", "ClientProtocol", "Simple", "SocketIO", "WsfleetJson"]

MESSAGE_KEY = b'"s"'
_T = re.compile(rb'"t":\s*(\d+)')
_S = re.compile(rb'"s":\s*(\d+)')
_OFFSET = re.compile(rb'"offset":\s*(\d+)')
_EPOCH = re.compile(rb'"epoch":\s*"([^"]*)"')


class ClientProtocol:
    """What a connection sends when it opens and does with each text frame."""

    name: ClassVar[str]
    path: ClassVar[str]

    def on_open(self, conn: Conn) -> None:
        raise NotImplementedError

    def on_frame(self, conn: Conn, data: bytes) -> None:
        raise NotImplementedError

    @staticmethod
    def count(conn: Conn, data: bytes) -> None:
        """Count the messages in ``data``; probes and trackers look closer."""
        n = data.count(MESSAGE_KEY)
        if not n:
            return
        conn.worker.received += n
        if conn.probe:
            now = time.time_ns()
            conn.worker.latencies.extend((now - int(t)) / 1e6 for t in _T.findall(data))
        if conn.track:
            conn.see(int(s) for s in _S.findall(data))
            offsets = _OFFSET.findall(data)
            if offsets:
                conn.offset = max(conn.offset, int(offsets[-1]))


class WsfleetJson(ClientProtocol):
    name = "wsfleet"
    path = "/connection/websocket"

    def on_open(self, conn: Conn) -> None:
        lines = [b'{"id":1,"connect":{}}']
        for n, channel in enumerate(conn.channels, start=2):
            sub: dict[str, object] = {"channel": channel}
            if conn.track:
                # Ask for the stream position, and after a reconnect for what was missed.
                sub["recoverable"] = True
                if conn.epoch:
                    sub.update(recover=True, offset=conn.offset, epoch=conn.epoch)
            lines.append(json.dumps({"id": n, "subscribe": sub}, separators=(",", ":")).encode())
        conn.pending = len(lines)
        conn.send(b"\n".join(lines))

    def on_frame(self, conn: Conn, data: bytes) -> None:
        self.count(conn, data)
        if conn.pending or b"{}" in data:
            for line in data.split(b"\n"):
                if line == b"{}":
                    conn.send(b"{}")  # the server's ping; no pong within pong_timeout is 3012
                elif line.startswith(b'{"id"'):
                    self._reply(conn, line)

    @staticmethod
    def _reply(conn: Conn, line: bytes) -> None:
        if b'"error"' in line:
            conn.failed(line.decode(errors="replace"))
            return
        if conn.track:
            epoch = _EPOCH.search(line)
            if epoch:
                conn.epoch = epoch.group(1).decode()
            if b'"recovered":true' in line:
                conn.worker.recovered += 1
        conn.acked()


class SocketIO(ClientProtocol):
    name = "socketio"
    path = "/socket.io/?EIO=4&transport=websocket"

    def on_open(self, conn: Conn) -> None:
        conn.pending = 1 + len(conn.channels)  # the namespace, then one ack per room

    def on_frame(self, conn: Conn, data: bytes) -> None:
        if data.startswith(b"42"):
            self.count(conn, data)
        elif data == b"2":
            conn.send(b"3")  # Engine.IO ping; the server closes a socket that misses pongs
        elif data.startswith(b"0{"):
            conn.send(b"40")
        elif data.startswith(b"40"):
            for n, channel in enumerate(conn.channels):
                conn.send(b"42%d" % n + json.dumps(["subscribe", channel]).encode())
            conn.acked()
        elif data.startswith(b"43"):
            conn.acked()
        elif data.startswith(b"44"):
            conn.failed(data.decode(errors="replace"))


class Simple(ClientProtocol):
    name = "simple"
    path = "/ws"

    def on_open(self, conn: Conn) -> None:
        conn.pending = len(conn.channels)
        for channel in conn.channels:
            conn.send(json.dumps({"subscribe": channel}).encode())
        if not conn.pending:
            conn.acked(final=True)

    def on_frame(self, conn: Conn, data: bytes) -> None:
        if conn.pending and b"subscribed" in data[:16]:
            conn.acked()
        else:
            self.count(conn, data)


PROTOCOLS: dict[str, ClientProtocol] = {p.name: p for p in (WsfleetJson(), SocketIO(), Simple())}
