"""SDK clients that record everything they see: one worker's share of the lab's clients.

Every client is an unmodified ``centrifuge.Client`` of the official
``centrifuge-python`` SDK, connected to the balancer's address with a
connection token, subscribed to the lab's channel with ``recoverable=True``
(and, for the first few clients, to a presence channel too). The SDK does
all the reconnecting, resubscribing and recovering by itself, with small
reconnect delays (its own jitter). The handlers only write down, with the
wall-clock time, every event:

* ``["connecting", t, code, reason]``: code 0 for the first ``connect()``,
  otherwise why the transport went (the server's close code, e.g. 3001);
* ``["connected", t, client_id]``, ``["disconnected", t, code, reason]``,
  ``["error", t, code, message]``;
* ``["subscribing", t, channel, code, reason]``, ``["subscribed", t, channel,
  was_recovering, recovered, offset, epoch]``, ``["unsubscribed", t, channel,
  code, reason]``, ``["sub_error", t, channel, code, message]``;
* ``["p", t, seq, offset]``: a publication of the lab's channel, ``seq`` being
  the publisher's sequence number carried in its data;
* ``["final", t, client_state, subscription_state]``: the states when the
  worker was told to stop, before it disconnects the client.

This module runs inside a worker process (:mod:`lab.workers` starts it and
collects its records); it has no knowledge of nodes or scenarios.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from centrifuge import (
    Client,
    ClientEventHandler,
    ClientState,
    ConnectedContext,
    ConnectingContext,
    DisconnectedContext,
    ErrorContext,
    PublicationContext,
    SubscribedContext,
    SubscribingContext,
    SubscriptionErrorContext,
    SubscriptionEventHandler,
    SubscriptionState,
    UnsubscribedContext,
)

from wsfleet.auth import mint_connection_token

__all__ = ["ClientSpec", "LabClient", "run_clients"]

Event = list[Any]


@dataclass(frozen=True, kw_only=True)
class ClientSpec:
    """What one worker runs: clients ``first`` .. ``first + count - 1`` of the lab."""

    url: str
    secret: str
    channel: str
    first: int = 0
    count: int = 1
    connect_rate: float = 100.0
    """New clients started per second by this worker (the lab divides its rate)."""
    presence_channel: str = ""
    presence_clients: int = 0
    """Clients ``0 .. presence_clients - 1`` (lab-wide numbers) also join ``presence_channel``."""
    min_reconnect_delay: float = 0.2
    max_reconnect_delay: float = 2.0
    protobuf_every: int = 0
    """Every n-th client speaks Protobuf; 0: all speak JSON."""
    user_prefix: str = "lab"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClientSpec:
        return cls(**data)


def _nothing() -> None:
    pass


def _now() -> float:
    return round(time.time(), 4)


class _ClientEvents(ClientEventHandler):
    def __init__(self, log: list[Event]) -> None:
        self.log = log

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        self.log.append(["connecting", _now(), ctx.code, ctx.reason])

    async def on_connected(self, ctx: ConnectedContext) -> None:
        self.log.append(["connected", _now(), ctx.client])

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        self.log.append(["disconnected", _now(), ctx.code, ctx.reason])

    async def on_error(self, ctx: ErrorContext) -> None:
        self.log.append(["error", _now(), ctx.code, str(ctx.error)[:200]])


class _SubscriptionEvents(SubscriptionEventHandler):
    def __init__(
        self,
        channel: str,
        log: list[Event],
        on_seq: Callable[[int], None],
        on_subscribed: Callable[[], None],
    ) -> None:
        self.channel = channel
        self.log = log
        self.on_seq = on_seq
        self.subscribed = on_subscribed

    async def on_subscribing(self, ctx: SubscribingContext) -> None:
        self.log.append(["subscribing", _now(), self.channel, ctx.code, ctx.reason])

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        pos = ctx.stream_position
        offset, epoch = (pos.offset, pos.epoch) if pos is not None else (0, "")
        self.log.append(
            [
                "subscribed",
                _now(),
                self.channel,
                ctx.was_recovering,
                ctx.recovered,
                offset,
                epoch,
            ]
        )
        self.subscribed()

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.log.append(["unsubscribed", _now(), self.channel, ctx.code, ctx.reason])

    async def on_error(self, ctx: SubscriptionErrorContext) -> None:
        self.log.append(["sub_error", _now(), self.channel, ctx.code, str(ctx.error)[:200]])

    async def on_publication(self, ctx: PublicationContext) -> None:
        data = ctx.pub.data
        if isinstance(data, (bytes, bytearray)):
            data = json.loads(data)
        seq = int(data["seq"])
        self.log.append(["p", _now(), seq, ctx.pub.offset])
        self.on_seq(seq)


@dataclass
class LabClient:
    """One SDK client and its record."""

    index: int
    spec: ClientSpec
    events: list[Event] = field(default_factory=list)
    last_seq: int = -1
    client: Client | None = None
    subscribed_once: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def user(self) -> str:
        return f"{self.spec.user_prefix}-{self.index}"

    @property
    def protobuf(self) -> bool:
        every = self.spec.protobuf_every
        return every > 0 and self.index % every == every - 1

    def _seen(self, seq: int) -> None:
        self.last_seq = max(self.last_seq, seq)

    async def start(self) -> None:
        spec = self.spec
        client = Client(
            spec.url,
            events=_ClientEvents(self.events),
            token=mint_connection_token(spec.secret, user=self.user),
            use_protobuf=self.protobuf,
            proxy=None,
            min_reconnect_delay=spec.min_reconnect_delay,
            max_reconnect_delay=spec.max_reconnect_delay,
        )
        self.client = client
        channels = [spec.channel]
        if spec.presence_channel and self.index < spec.presence_clients:
            channels.append(spec.presence_channel)
        for channel in channels:
            main = channel == spec.channel
            on_subscribed = self.subscribed_once.set if main else _nothing
            handler = _SubscriptionEvents(channel, self.events, self._seen, on_subscribed)
            sub = client.new_subscription(
                channel,
                handler,
                recoverable=main,
                min_resubscribe_delay=spec.min_reconnect_delay,
                max_resubscribe_delay=spec.max_reconnect_delay,
            )
            await sub.subscribe()  # sent once connected
        await client.connect()

    def settled(self, last_seq: int) -> bool:
        """Connected, subscribed, and publication ``last_seq`` received."""
        client = self.client
        if client is None or client.state is not ClientState.CONNECTED:
            return False
        sub = client.subscriptions().get(self.spec.channel)
        if sub is None or sub.state is not SubscriptionState.SUBSCRIBED:
            return False
        return self.last_seq >= last_seq

    def final_state(self) -> None:
        client = self.client
        if client is None:
            self.events.append(["final", _now(), "never started", ""])
            return
        sub = client.subscriptions().get(self.spec.channel)
        sub_state = sub.state.value if sub is not None else "none"
        self.events.append(["final", _now(), client.state.value, sub_state])

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.disconnect()

    def record(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "user": self.user,
            "protobuf": self.protobuf,
            "presence": bool(
                self.spec.presence_channel and self.index < self.spec.presence_clients
            ),
            "events": self.events,
        }


async def run_clients(
    spec: ClientSpec,
    stop: asyncio.Future[dict[str, Any]],
    progress: Callable[[dict[str, Any]], None],
) -> list[dict[str, Any]]:
    """Run the spec's clients until ``stop`` resolves; their records.

    Clients are started at ``spec.connect_rate`` per second. ``progress`` is
    told ``{"event": "ready"}`` once each has subscribed at least once. The
    value of ``stop`` may carry ``last_seq`` and ``settle_timeout``: before
    stopping, the worker waits (at most ``settle_timeout`` seconds) until
    every client is connected, subscribed, and has received publication
    ``last_seq``: one in the middle of a reconnect at the end is not counted
    as left disconnected unless it stays so.
    """
    clients = [LabClient(spec.first + i, spec) for i in range(spec.count)]
    starting: set[asyncio.Task[None]] = set()
    interval = 1.0 / spec.connect_rate if spec.connect_rate > 0 else 0.0
    began = time.monotonic()
    for i, lab_client in enumerate(clients):
        task = asyncio.create_task(lab_client.start())
        starting.add(task)
        task.add_done_callback(starting.discard)
        delay = began + (i + 1) * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    progress({"event": "started", "count": len(clients)})
    ready: asyncio.Future[Any] = asyncio.ensure_future(
        asyncio.gather(*(c.subscribed_once.wait() for c in clients))
    )
    either: list[asyncio.Future[Any]] = [ready, stop]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if ready.done():
        progress({"event": "ready", "count": len(clients)})
    else:
        ready.cancel()
    order = await stop
    await _settle(clients, int(order.get("last_seq", -1)), float(order.get("settle_timeout", 0)))
    for lab_client in clients:
        lab_client.final_state()
    await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)
    if starting:
        await asyncio.gather(*starting, return_exceptions=True)
    return [c.record() for c in clients]


async def _settle(clients: list[LabClient], last_seq: int, timeout: float) -> None:
    """Until every client is connected, subscribed and has seen ``last_seq`` (or time is up)."""
    if timeout <= 0:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(c.settled(last_seq) for c in clients):
            return
        await asyncio.sleep(0.05)
