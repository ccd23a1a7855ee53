"""Helpers of the peer tests: peers run, published to and listened to as the load generator does.

Shared by ``test_peers_node.py`` and ``test_peers_python.py``. A peer runs in
its own process on free ports, ready once ``POST /publish []`` answers; a
client speaking the contract by hand (aiohttp's WebSocket client) subscribes,
and messages published over one keep-alive HTTP connection must each arrive
exactly once, in order per channel. Where the two families of peers differ, a
keyword-only option says how; its default is the strict reading of the contract.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest

from benchmarks.peers.spec import PeerSpec
from lab.ports import node_port

ROOT = Path(__file__).resolve().parents[2]
COUNT = 50
BATCH = 10  # messages per POST: several requests on one connection exercise keep-alive
START_TIMEOUT = 20.0
"""Seconds a peer has to answer ``POST /publish []`` before the test fails (default)."""


# -- HTTP publishing over one raw keep-alive connection ------------------------------------


class Publisher:
    """``POST /publish`` on one connection; a server that closes it fails the next post."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def post(self, messages: Any) -> tuple[int, Any]:
        body = json.dumps(messages).encode()
        head = (
            "POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        response = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        lines = response.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        payload = await self.reader.readexactly(int(headers["content-length"]))
        return int(lines[0].split(" ")[1]), json.loads(payload)


@asynccontextmanager
async def publisher(port: int) -> AsyncIterator[Publisher]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield Publisher(reader, writer)
    finally:
        writer.close()
        await writer.wait_closed()


# -- peer processes ----------------------------------------------------------------------------


@dataclass
class Peer:
    port: int
    publish_port: int  # the same as ``port`` unless the spec asks for a separate one
    process: asyncio.subprocess.Process


async def wait_ready(peer: Peer, timeout: float = START_TIMEOUT) -> None:
    """Until ``POST /publish []`` answers 200, as the load generator waits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and peer.process.returncode is None:
        try:
            async with publisher(peer.publish_port) as pub:
                if await pub.post([]) == (200, {"published": 0}):
                    return
        except (OSError, asyncio.IncompleteReadError):
            pass
        await asyncio.sleep(0.05)
    if peer.process.returncode is None:
        peer.process.kill()
    _, stderr = await peer.process.communicate()
    pytest.fail(f"peer did not become ready (exit {peer.process.returncode}):\n{stderr.decode()}")


@asynccontextmanager
async def running(
    spec: PeerSpec,
    redis_url: str | None = None,
    *,
    start_timeout: float = START_TIMEOUT,
    sigterm_exit_ok: bool = False,
) -> AsyncIterator[Peer]:
    """The peer on free ports; stopped with SIGTERM, which must end it cleanly.

    Clean is status 0. With ``sigterm_exit_ok`` (default off), death by SIGTERM
    with nothing on stderr is clean too: uvicorn shuts down gracefully, then
    raises the signal it caught again. ``start_timeout`` bounds :func:`wait_ready`.
    """
    port = node_port()
    publish_port = node_port() if spec.publish_port else port
    argv = [*spec.command, "--host", "127.0.0.1", "--port", str(port)]
    if spec.publish_port:
        argv += ["--publish-port", str(publish_port)]
    if redis_url is not None:
        argv += ["--redis", redis_url]
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    peer = Peer(port, publish_port, process)
    try:
        await wait_ready(peer, start_timeout)
        yield peer
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), 10)
        except TimeoutError:
            process.kill()
            _, stderr = await process.communicate()
    clean = process.returncode == 0 or (
        sigterm_exit_ok and process.returncode == -signal.SIGTERM and not stderr
    )
    assert clean, f"{spec.name} exited {process.returncode}:\n{stderr.decode()}"


# -- clients speaking the two protocols by hand -------------------------------------------------


class Client(Protocol):
    async def subscribe(self, channels: tuple[str, ...]) -> None: ...

    async def message(self, timeout: float) -> Any: ...


class SimpleClient:
    """The "simple" protocol at ``/ws``.

    ``send_unknown`` (default off): before subscribing, send frames a peer must
    ignore (text that is not JSON, an unknown command, a binary frame).
    ``replies_in_order`` (default on): the replies must be ``{"subscribed": channel}``
    in the order of the subscriptions; off, only the set of channels named counts.
    """

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        *,
        send_unknown: bool = False,
        replies_in_order: bool = True,
    ) -> None:
        self.ws = ws
        self.send_unknown = send_unknown
        self.replies_in_order = replies_in_order

    async def subscribe(self, channels: tuple[str, ...]) -> None:
        if self.send_unknown:
            for unknown in ("not json", '{"unsubscribe": "x"}'):  # unknown frames are ignored
                await self.ws.send_str(unknown)
            await self.ws.send_bytes(b"\x00")
        for channel in channels:
            await self.ws.send_str(json.dumps({"subscribe": channel}))
        if self.replies_in_order:
            for channel in channels:
                assert json.loads(await self.ws.receive_str(timeout=5)) == {"subscribed": channel}
        else:
            replies = [json.loads(await self.ws.receive_str(timeout=5)) for _ in channels]
            # broadcaster subscribes each channel in its own task: replies may interleave.
            assert sorted(r["subscribed"] for r in replies) == sorted(channels)

    async def message(self, timeout: float) -> Any:
        text = await self.ws.receive_str(timeout=timeout)
        data = json.loads(text)
        assert text == json.dumps(data, separators=(",", ":")), "not compact JSON"
        return data


class SocketIOClient:
    """Engine.IO v4 over WebSocket, default namespace, by hand."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.acks = 0

    async def open(self) -> None:
        assert (await self.ws.receive_str(timeout=5)).startswith("0{")  # Engine.IO open
        await self.ws.send_str("40")
        connected = await self._packet(5)
        assert connected.startswith("40") and "sid" in json.loads(connected[2:])

    async def _packet(self, timeout: float) -> str:
        while True:
            text = await self.ws.receive_str(timeout=timeout)
            if text == "2":  # Engine.IO ping: the client answers, or the server drops it
                await self.ws.send_str("3")
                continue
            return text

    async def subscribe(self, channels: tuple[str, ...]) -> None:
        first = self.acks
        for channel in channels:
            await self.ws.send_str(f"42{self.acks}" + json.dumps(["subscribe", channel]))
            self.acks += 1
        for ack in range(first, self.acks):
            assert (await self._packet(5)).startswith(f"43{ack}[")

    async def message(self, timeout: float) -> Any:
        packet = await self._packet(timeout)
        assert packet.startswith("42["), packet
        event, data = json.loads(packet[2:])
        assert event == "message"
        return data


@asynccontextmanager
async def client(
    spec: PeerSpec, port: int, *, send_unknown: bool = False, replies_in_order: bool = True
) -> AsyncIterator[Client]:
    """A client of ``spec``'s protocol; the options are :class:`SimpleClient`'s
    (the Socket.IO client has none)."""
    async with aiohttp.ClientSession() as session:
        if spec.protocol == "simple":
            async with session.ws_connect(f"ws://127.0.0.1:{port}/ws") as ws:
                yield SimpleClient(ws, send_unknown=send_unknown, replies_in_order=replies_in_order)
        else:
            url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
            async with session.ws_connect(url) as ws:
                sio = SocketIOClient(ws)
                await sio.open()
                yield sio


# -- the checks -----------------------------------------------------------------------------------


def messages(channels: tuple[str, str]) -> list[dict[str, Any]]:
    """COUNT messages alternating between the channels, shaped as the benchmark's."""
    return [
        {
            "channel": channels[i % 2],
            "data": {"t": time.time_ns(), "s": i, "c": channels[i % 2], "p": "x" * 32},
        }
        for i in range(COUNT)
    ]


async def receive(
    sub: Client, count: int, ignore: Callable[[Any], bool] | None = None
) -> list[Any]:
    """The next ``count`` messages, leaving out those ``ignore`` is true of (default none)."""
    received: list[Any] = []
    while len(received) < count:
        data = await sub.message(timeout=10)
        if ignore is None or not ignore(data):
            received.append(data)
    return received


def _unchanged(data: Any) -> Any:
    return data


async def check_delivery(
    sub: Client,
    publish_port: int,
    channels: tuple[str, str],
    *,
    ignore: Callable[[Any], bool] | None = None,
    normalize: Callable[[Any], Any] = _unchanged,
) -> None:
    """Publish :func:`messages` over ``channels`` in batches of BATCH; each must arrive
    once at ``sub`` (subscribed to both), in order per channel.

    ``ignore`` (default none) leaves messages out of the count, such as a barrier's
    probes; ``normalize`` (default unchanged) is applied to what was sent and what
    arrived alike before they are compared.
    """
    sent = messages(channels)
    async with publisher(publish_port) as pub:
        for start in range(0, COUNT, BATCH):
            batch = sent[start : start + BATCH]
            assert await pub.post(batch) == (200, {"published": len(batch)})
    received = await receive(sub, COUNT, ignore)
    with pytest.raises(TimeoutError):  # exactly once: nothing follows
        await sub.message(timeout=0.3)
    for channel in channels:
        expected = [normalize(m["data"]) for m in sent if m["channel"] == channel]
        assert [normalize(d) for d in received if d["c"] == channel] == expected


async def check_bad_publish_is_400(publish_port: int) -> None:
    """A body that is not a list of messages is refused with 400, and the connection survives."""
    async with publisher(publish_port) as pub:
        status, _ = await pub.post({"channel": "x"})
        assert status == 400
        assert await pub.post([]) == (200, {"published": 0})  # the connection survives
