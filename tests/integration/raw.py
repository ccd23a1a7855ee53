"""A raw WebSocket client for tests that must send what no SDK would.

Protobuf frames are built and read with the official SDK's own codec, so the
bytes on the wire do not depend on the server's codec under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import websockets
from centrifuge.codecs import _ProtobufCodec
from websockets.asyncio import client as ws_client
from websockets.asyncio.client import ClientConnection
from websockets.datastructures import HeadersLike
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.integration.clients import WAIT
from tests.node_harness import RunningNode


def pb_commands(*commands: dict[str, Any]) -> bytes:
    """Commands in the Protobuf wire format (length-prefixed), built from dicts."""
    return bytes(_ProtobufCodec.encode_commands(commands))


def pb_replies(frame: bytes) -> list[dict[str, Any]]:
    """The replies in a Protobuf frame, as dicts (set fields only, even empty ones)."""
    return list(_ProtobufCodec.decode_replies(frame))


def ws_connect(
    node: RunningNode,
    *,
    protobuf: bool = False,
    headers: HeadersLike | None = None,
    source: str | None = None,
    max_queue: int = 16,
) -> ws_client.connect:
    """A WebSocket handshake to the node (await it, or use it as a context manager).

    headers: extra headers of the upgrade request (``X-Forwarded-For``, say); a list
    of pairs may repeat a header.
    source: the local address to connect from; every 127.x.y.z is this host,
    so a test can be several client addresses.
    """
    extra: dict[str, Any] = {"local_addr": (source, 0)} if source else {}
    subprotocols: Any = ["centrifuge-protobuf"] if protobuf else None
    return websockets.connect(
        node.ws_url,
        subprotocols=subprotocols,
        additional_headers=headers,
        proxy=None,
        max_size=None,
        max_queue=max_queue,
        **extra,
    )


@contextlib.asynccontextmanager
async def raw_client(
    node: RunningNode,
    *,
    protobuf: bool = False,
    connect: bool = True,
    token: str = "",
    max_queue: int = 16,
    headers: HeadersLike | None = None,
    source: str | None = None,
) -> AsyncIterator[ClientConnection]:
    """A raw WebSocket to the node, by default after a successful connect command.

    token: the connection token sent with connect ("" sends none).
    max_queue: frames the client buffers before it stops reading the socket.
    headers, source: as for :func:`ws_connect`.
    """
    async with ws_connect(
        node, protobuf=protobuf, headers=headers, source=source, max_queue=max_queue
    ) as ws:
        if connect:
            request = {"token": token} if token else {}
            if protobuf:
                await ws.send(pb_commands({"id": 1, "connect": request}))
                (reply,) = pb_replies(await recv_binary(ws))
                assert reply["id"] == 1 and "connect" in reply
            else:
                await ws.send(json.dumps({"id": 1, "connect": request}))
                reply = json.loads(await recv_text(ws))
                assert reply["id"] == 1 and "connect" in reply
        yield ws


@dataclass(frozen=True)
class Refusal:
    """A handshake the node answered with an HTTP error instead of the upgrade."""

    status: int
    retry_after: int
    """The ``Retry-After`` header, seconds (a refusal without it fails the test)."""
    body: str


async def handshake(node: RunningNode, **kw: Any) -> Refusal | None:
    """Try a handshake (``kw`` as for :func:`ws_connect`): None if the node upgraded
    it (the connection is closed again at once), else how it refused."""
    try:
        async with ws_connect(node, **kw):
            return None
    except InvalidStatus as exc:
        response = exc.response
        return Refusal(
            response.status_code, int(response.headers["Retry-After"]), response.body.decode()
        )


async def refused(node: RunningNode, **kw: Any) -> Refusal:
    """A handshake (``kw`` as for :func:`ws_connect`) the node must refuse."""
    refusal = await handshake(node, **kw)
    assert refusal is not None, "the handshake was accepted"
    return refusal


async def hold_open(
    node: RunningNode, stack: contextlib.AsyncExitStack, count: int, **kw: Any
) -> list[int]:
    """Open ``count`` WebSockets at once, kept open until ``stack`` closes; each one's
    HTTP status (101: upgraded). ``kw`` as for :func:`ws_connect`."""

    async def one() -> int:
        try:
            await stack.enter_async_context(ws_connect(node, **kw))
        except InvalidStatus as exc:
            return exc.response.status_code
        return 101

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def recv_binary(ws: ClientConnection) -> bytes:
    frame = await asyncio.wait_for(ws.recv(), WAIT)
    assert isinstance(frame, bytes), "a text frame on a Protobuf connection"
    return frame


async def recv_text(ws: ClientConnection) -> str:
    frame = await asyncio.wait_for(ws.recv(), WAIT)
    assert isinstance(frame, str), "a binary frame on a JSON connection"
    return frame


async def json_replies(ws: ClientConnection) -> list[dict[str, Any]]:
    frame = await recv_text(ws)
    return [json.loads(line) for line in frame.splitlines() if line.strip()]


async def closed_with(ws: ClientConnection) -> tuple[int, list[Any]]:
    """Read until the server closes; its close code and what came before the close."""
    received: list[Any] = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            received.append(await asyncio.wait_for(ws.recv(), WAIT))
    assert ws.close_code is not None, "the connection ended without a close frame"
    return ws.close_code, received


async def connected(node: RunningNode) -> ClientConnection:
    """A raw JSON WebSocket after a successful connect (dev mode or anonymous allowed).

    Not a context manager: for tests that hold many and close them themselves.
    """
    ws = await websockets.connect(node.ws_url, proxy=None)
    await ws.send(json.dumps({"id": 1, "connect": {}}))
    reply = json.loads(await recv_text(ws))
    assert "connect" in reply, reply
    return ws


async def closed_at(ws: ClientConnection) -> tuple[float, int | None, str]:
    """When the server closed ``ws`` (monotonic seconds), with its code and reason."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.recv()
    return time.monotonic(), ws.close_code, ws.close_reason or ""
