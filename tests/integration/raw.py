"""A raw WebSocket client for tests that must send what no SDK would.

Protobuf frames are built and read with the official SDK's own codec, so the
bytes on the wire do not depend on the server's codec under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import websockets
from centrifuge.codecs import _ProtobufCodec
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.integration.clients import WAIT
from tests.node_harness import RunningNode


def pb_commands(*commands: dict[str, Any]) -> bytes:
    """Commands in the Protobuf wire format (length-prefixed), built from dicts."""
    return bytes(_ProtobufCodec.encode_commands(commands))


def pb_replies(frame: bytes) -> list[dict[str, Any]]:
    """The replies in a Protobuf frame, as dicts (set fields only, even empty ones)."""
    return list(_ProtobufCodec.decode_replies(frame))


@contextlib.asynccontextmanager
async def raw_client(
    node: RunningNode,
    *,
    protobuf: bool = False,
    connect: bool = True,
    token: str = "",
    max_queue: int = 16,
) -> AsyncIterator[ClientConnection]:
    """A raw WebSocket to the node, by default after a successful connect command.

    token: the connection token sent with connect ("" sends none).
    max_queue: frames the client buffers before it stops reading the socket.
    """
    subprotocols: Any = ["centrifuge-protobuf"] if protobuf else None
    async with websockets.connect(
        node.ws_url, subprotocols=subprotocols, proxy=None, max_size=None, max_queue=max_queue
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
