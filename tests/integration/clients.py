"""Helpers of the integration tests: the real SDK and ``cent``, recorded.

Every event an SDK handler sees goes into an :class:`Events` recorder, and
tests wait for what they expect with :meth:`Events.next` (which fails after a
generous timeout instead of hanging), never with sleeps or timing asserts.

Payloads: on the JSON protocol the SDK takes and returns JSON values; on the
Protobuf protocol it takes and returns bytes. Tests use JSON documents encoded
to bytes on Protobuf (:func:`payload`) and read both back with :func:`value`,
so the same assertion holds on both protocols and across them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import cent
import pytest
from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectedContext,
    ConnectingContext,
    DisconnectedContext,
    ErrorContext,
    JoinContext,
    LeaveContext,
    PublicationContext,
    ServerJoinContext,
    ServerLeaveContext,
    ServerPublicationContext,
    ServerSubscribedContext,
    ServerSubscribingContext,
    ServerUnsubscribedContext,
    SubscribedContext,
    SubscribingContext,
    SubscriptionErrorContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.node_harness import RunningNode

WAIT = 10.0
"""Seconds to wait for an event before failing (only to avoid hanging)."""

BOTH_PROTOCOLS = pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])


def payload(value: Any, *, protobuf: bool) -> Any:
    """``value`` as the SDK takes it on its protocol (bytes on Protobuf)."""
    return json.dumps(value).encode() if protobuf else value


def value(data: Any) -> Any:
    """A received payload back as a JSON value, whatever the protocol."""
    if isinstance(data, (bytes, bytearray)):
        return json.loads(data)
    return data


async def eventually(check: Callable[[], Any], *, within: float = WAIT) -> None:
    """Poll ``check`` (a predicate, plain or async) until it holds; fail with its last value."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {within}s: {result!r}")
        await asyncio.sleep(0.05)


async def http_get(node: RunningNode, path: str) -> tuple[int, str]:
    """GET ``path`` on the node's internal port: the status and the body."""
    async with aiohttp.ClientSession() as http, http.get(node.internal_url + path) as resp:
        return resp.status, await resp.text()


async def scrape(node: RunningNode) -> dict[str, float]:
    """The node's /metrics, each sample keyed as written there: ``name`` or
    ``name{label="value"}``."""
    status, text = await http_get(node, "/metrics")
    assert status == 200
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


class Events:
    """Named queues of recorded events."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[Any]] = defaultdict(asyncio.Queue)

    def put(self, kind: str, item: Any) -> None:
        self._queues[kind].put_nowait(item)

    async def next(self, kind: str, timeout: float = WAIT) -> Any:
        """The next ``kind`` event; fails the test if none comes within ``timeout``."""
        try:
            return await asyncio.wait_for(self._queues[kind].get(), timeout)
        except TimeoutError:
            pytest.fail(f"no {kind!r} event within {timeout} s")

    async def take(self, kind: str, count: int, timeout: float = WAIT) -> list[Any]:
        return [await self.next(kind, timeout) for _ in range(count)]

    def pending(self, kind: str) -> list[Any]:
        """Events of ``kind`` recorded and not taken yet (without waiting)."""
        queue = self._queues[kind]
        out = []
        while not queue.empty():
            out.append(queue.get_nowait())
        return out


class SubEvents(SubscriptionEventHandler):
    """Records a subscription's events: ``pub`` holds PublicationContext.pub."""

    def __init__(self) -> None:
        self.events = Events()

    async def next(self, kind: str, timeout: float = WAIT) -> Any:
        return await self.events.next(kind, timeout)

    async def take(self, kind: str, count: int, timeout: float = WAIT) -> list[Any]:
        return await self.events.take(kind, count, timeout)

    async def on_subscribing(self, ctx: SubscribingContext) -> None:
        # subscribe() itself reports code 0; "subscribing" is kept for
        # resubscribes after a lost connection or a server unsubscribe.
        self.events.put("subscribe_called" if ctx.code == 0 else "subscribing", ctx)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.events.put("subscribed", ctx)

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.events.put("unsubscribed", ctx)

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.events.put("pub", ctx.pub)

    async def on_join(self, ctx: JoinContext) -> None:
        self.events.put("join", ctx.info)

    async def on_leave(self, ctx: LeaveContext) -> None:
        self.events.put("leave", ctx.info)

    async def on_error(self, ctx: SubscriptionErrorContext) -> None:
        self.events.put("error", ctx)


class ClientEvents(ClientEventHandler):
    """Records a client's events, server-side subscriptions included."""

    def __init__(self) -> None:
        self.events = Events()

    async def next(self, kind: str, timeout: float = WAIT) -> Any:
        return await self.events.next(kind, timeout)

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        # connect() itself reports code 0; "connecting" is kept for lost
        # connections the SDK reconnects (the server's close code).
        self.events.put("connect_called" if ctx.code == 0 else "connecting", ctx)

    async def on_connected(self, ctx: ConnectedContext) -> None:
        self.events.put("connected", ctx)

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        self.events.put("disconnected", ctx)

    async def on_error(self, ctx: ErrorContext) -> None:
        self.events.put("error", ctx)

    async def on_subscribed(self, ctx: ServerSubscribedContext) -> None:
        self.events.put("server_subscribed", ctx)

    async def on_subscribing(self, ctx: ServerSubscribingContext) -> None:
        self.events.put("server_subscribing", ctx)

    async def on_unsubscribed(self, ctx: ServerUnsubscribedContext) -> None:
        self.events.put("server_unsubscribed", ctx)

    async def on_publication(self, ctx: ServerPublicationContext) -> None:
        self.events.put("server_pub", ctx)

    async def on_join(self, ctx: ServerJoinContext) -> None:
        self.events.put("server_join", ctx)

    async def on_leave(self, ctx: ServerLeaveContext) -> None:
        self.events.put("server_leave", ctx)


def new_client(
    node: RunningNode,
    *,
    protobuf: bool = False,
    events: ClientEventHandler | None = None,
    **kw: Any,
) -> Client:
    """An SDK client for ``node`` that reconnects fast (tests never wait for backoff)."""
    kw.setdefault("min_reconnect_delay", 0.05)
    kw.setdefault("max_reconnect_delay", 0.5)
    return Client(node.ws_url, events=events, use_protobuf=protobuf, proxy=None, **kw)


@contextlib.asynccontextmanager
async def sdk_client(
    node: RunningNode,
    *,
    protobuf: bool = False,
    events: ClientEventHandler | None = None,
    **kw: Any,
) -> AsyncIterator[Client]:
    """A connected SDK client, disconnected on exit."""
    client = new_client(node, protobuf=protobuf, events=events, **kw)
    await client.connect()
    try:
        await client.ready(timeout=WAIT)
        yield client
    finally:
        await client.disconnect()


async def subscribed(client: Client, channel: str, **kw: Any) -> tuple[Any, SubEvents]:
    """A new subscription of ``client`` to ``channel``, subscribed; with its recorder.

    The recorder still holds the first ``subscribed`` event.
    """
    events = SubEvents()
    sub = client.new_subscription(channel, events, **kw)
    await sub.subscribe()
    await sub.ready(timeout=WAIT)
    return sub, events


@contextlib.asynccontextmanager
async def api_client(node: RunningNode, key: str = "dev") -> AsyncIterator[cent.AsyncClient]:
    api = cent.AsyncClient(node.api_url, key)
    try:
        yield api
    finally:
        await api.close()


class Watcher:
    """A well-behaved SDK subscriber that must receive every publication of a channel.

    Tests of abuse publish through :meth:`publish` before, during and after the
    abuse, then :meth:`check` that the watcher got all of them, in order.
    """

    def __init__(self, node: RunningNode, api: cent.AsyncClient, channel: str) -> None:
        self.node = node
        self.api = api
        self.channel = channel
        self.sent: list[int] = []
        self._n = 0
        self._lock = asyncio.Lock()  # concurrent callers publish one at a time, in order
        self.events = SubEvents()
        self.client: Client | None = None

    async def start(self, *, protobuf: bool = False) -> None:
        self.client = new_client(self.node, protobuf=protobuf)
        sub = self.client.new_subscription(self.channel, self.events)
        await self.client.connect()
        await sub.subscribe()
        await sub.ready(timeout=WAIT)

    async def publish(self) -> None:
        async with self._lock:
            self._n += 1
            await self.api.publish(cent.PublishRequest(channel=self.channel, data={"n": self._n}))
            self.sent.append(self._n)

    @property
    def published(self) -> int:
        """How many publications the watcher sent in all."""
        return self._n

    async def check(self) -> None:
        """Every publication sent so far arrived, in order, and the client is still connected."""
        got = [value((await self.events.next("pub")).data)["n"] for _ in self.sent]
        assert got == self.sent
        assert self.client is not None
        assert self.client.state.value == "connected"
        self.sent.clear()

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.disconnect()


@contextlib.asynccontextmanager
async def watching(node: RunningNode, *, protobuf: bool = False) -> AsyncIterator[Watcher]:
    """A :class:`Watcher` of the channel ``watched``, subscribed, stopped on exit."""
    async with api_client(node) as api:
        watcher = Watcher(node, api, "watched")
        await watcher.start(protobuf=protobuf)
        try:
            yield watcher
        finally:
            await watcher.stop()


Abuse = Callable[[RunningNode, Watcher], Awaitable[None]]


async def with_watcher(node: RunningNode, abuse: Abuse, *, protobuf: bool = False) -> None:
    """Run ``abuse`` while a :class:`Watcher` must keep getting every publication.

    Publications go out before, during (the abuse calls ``watcher.publish``)
    and after; then a new client must still be able to connect and receive.
    """
    async with watching(node, protobuf=protobuf) as watcher:
        await watcher.publish()
        await abuse(node, watcher)
        await watcher.publish()
        await watcher.check()
        async with sdk_client(node) as fresh:  # the node still takes new clients
            _, events = await subscribed(fresh, "watched")
            await watcher.publish()
            await watcher.check()
            assert (await events.next("pub")).offset == watcher.published
