"""A switchable TCP forwarder: the load balancer in front of a fleet, in miniature.

A real deployment gives clients one address (the ingress), and which node a
connection reaches is the balancer's choice. The SDK's ``Client`` likewise has
one address. Tests that move a client from one node to another point the
client at a :class:`Balancer` and change its route between connections: the
SDK reconnects to the same address, as it would in production, and lands on
another node. Nothing in the SDK is touched.

Bytes are copied as they are (WebSocket included); when either side closes,
both do. A connection that arrives while the route leads to a dead node, or
to none, is closed at once, as a balancer with no healthy backend would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tests.fleet.processes import NodeProcess

__all__ = ["Balancer", "balancer"]


class Balancer:
    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._target: NodeProcess | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.routed: list[str] = []
        """Name of the node each accepted connection was sent to ("" for none)."""

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    def route_to(self, node: NodeProcess | None) -> None:
        """New connections go to ``node`` (None: refused); open ones stay where they are."""
        self._target = node

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            target = self._target
            self.routed.append(target.name if target is not None else "")
            if target is None:
                return
            try:
                up_reader, upstream = await asyncio.open_connection("127.0.0.1", target.port)
            except OSError:
                return
            self._writers.add(upstream)
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.close()
                    with contextlib.suppress(OSError, asyncio.CancelledError):
                        await w.wait_closed()
                    self._writers.discard(w)
            self._tasks.discard(task)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    finally:
        sink.close()  # one side gone: the whole connection goes, as a proxy does


@contextlib.asynccontextmanager
async def balancer(target: NodeProcess | None = None) -> AsyncIterator[Balancer]:
    lb = Balancer()
    lb.route_to(target)
    await lb.start()
    try:
        yield lb
    finally:
        await lb.close()
