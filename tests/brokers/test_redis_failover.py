"""The Redis broker when Redis dies: fast errors, readiness, self-healing pub/sub.

Each test gets its own private redis-server, kills it with SIGKILL (its data
is gone: no persistence) and restarts it on the same port.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from tests.redis_servers import EventLog, RedisServer, redis_server
from wsfleet.brokers.base import (
    BrokerError,
    HistoryOptions,
    HistoryQuery,
    PublishOptions,
    PublishResult,
)
from wsfleet.brokers.redis import RedisBroker, create_redis_broker
from wsfleet.protocol.messages import Publication, StreamPosition, raw

pytestmark = pytest.mark.redis

HISTORY = HistoryOptions(size=10, ttl=60.0, meta_ttl=600.0)
KEEP = PublishOptions(history=HISTORY)


def pub(n: int) -> Publication:
    return Publication(data=raw(b'{"n":%d}' % n))


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with redis_server() as started:
        yield started


@pytest.fixture
async def node(server: RedisServer) -> AsyncIterator[tuple[RedisBroker, EventLog]]:
    broker, _ = create_redis_broker(server.url, key_prefix="failover", node_id="a")
    # Short pings so a dead link is noticed fast; only speeds the test up.
    broker._ping_interval = 0.2
    recorder = EventLog()
    await broker.start(recorder)
    yield broker, recorder
    await broker.close()


@dataclass
class LiveRoom:
    """A node subscribed to "room" that received one publication."""

    broker: RedisBroker
    events: EventLog
    first: PublishResult
    resubscribed: list[set[str]] = field(default_factory=list)


@pytest.fixture
async def room(node: tuple[RedisBroker, EventLog]) -> LiveRoom:
    broker, events = node
    await broker.subscribe("room")
    first = await broker.publish("room", pub(1), KEEP)
    assert (await events.next()).position == first.position
    live = LiveRoom(broker, events, first)
    broker.on_resubscribed = live.resubscribed.append
    return live


async def wait_until(predicate: object, *, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_outage_raises_fast_then_pubsub_heals_itself_with_a_new_epoch(
    server: RedisServer, room: LiveRoom
) -> None:
    broker, events, first, resubscribed = room.broker, room.events, room.first, room.resubscribed
    assert broker.unavailable_reason() is None

    server.kill()
    # Every operation fails with BrokerError; none hangs (the pytest timeout
    # would catch a hang; no duration is asserted).
    with pytest.raises(BrokerError):
        await broker.publish("room", pub(2), KEEP)
    with pytest.raises(BrokerError):
        await broker.history("room", HistoryQuery(limit=-1), HISTORY)
    with pytest.raises(BrokerError):
        await broker.presence("room")
    with pytest.raises(BrokerError):
        await broker.subscribe("other")
    await wait_until(lambda: broker.unavailable_reason() is not None)
    assert broker.unavailable_reason().startswith("redis unreachable")  # type: ignore[union-attr]

    server.start()
    # Nobody calls subscribe again: the link resubscribes by itself, and says so.
    await wait_until(lambda: bool(resubscribed))
    assert resubscribed == [{"room"}]
    assert broker.unavailable_reason() is None
    again = await broker.publish("room", pub(3), KEEP)
    event = await events.next()
    assert event.pub is not None and event.pub.offset == 1 == again.position.offset
    # Redis lost its data: the stream lives on in a new epoch, so a client
    # holding the old position is told it did not recover.
    assert again.position.epoch != first.position.epoch
    page = await broker.history("room", HistoryQuery(since=first.position, limit=-1), HISTORY)
    assert page.position.epoch != first.position.epoch
    assert page.position == again.position


async def test_a_publishing_peer_keeps_working_across_the_outage(
    server: RedisServer, node: tuple[RedisBroker, EventLog]
) -> None:
    broker, events = node
    await broker.subscribe("room")
    publisher, _ = create_redis_broker(server.url, key_prefix="failover", node_id="b")
    await publisher.start(EventLog())
    try:
        server.kill()
        with pytest.raises(BrokerError):
            await publisher.publish("room", pub(1), KEEP)
        # The subscriber's link noticed, so "available" below means it came back.
        await wait_until(lambda: broker.unavailable_reason() is not None)
        server.start()
        # The publisher's command pool reconnects on the next call.
        await wait_until(lambda: broker.unavailable_reason() is None)
        result = await publisher.publish("room", pub(2), KEEP)
        event = await events.next()
        assert event.position == result.position
    finally:
        await publisher.close()


async def test_start_fails_fast_when_redis_is_down() -> None:
    with redis_server() as server:
        url = server.url
    broker, _ = create_redis_broker(url)
    with pytest.raises(BrokerError, match="redis unreachable"):
        await broker.start(EventLog())
    assert broker.unavailable_reason() is not None
    await broker.close()


async def test_position_survives_a_reconnect_without_data_loss(
    server: RedisServer, room: LiveRoom
) -> None:
    broker, events, first, resubscribed = room.broker, room.events, room.first, room.resubscribed
    # Kill only the pub/sub connection (Redis keeps its data): same epoch after.
    server.cli("client", "kill", "type", "pubsub")
    await wait_until(lambda: bool(resubscribed))
    second = await broker.publish("room", pub(2), KEEP)
    assert second.position == StreamPosition(offset=2, epoch=first.position.epoch)
    event = await events.next()
    assert event.position == second.position


async def test_publishes_survive_redis_losing_its_scripts(
    server: RedisServer, node: tuple[RedisBroker, EventLog]
) -> None:
    # A restarted or failed-over Redis has no scripts: pipelined EVALSHAs answer
    # NOSCRIPT and are sent again after SCRIPT LOAD, in order.
    broker, _ = node
    first = await broker.publish("room", pub(1), KEEP)
    server.cli("script", "flush")
    results = await asyncio.gather(*(broker.publish("room", pub(n), KEEP) for n in range(2, 12)))
    assert [r.position.offset for r in results] == list(range(2, 12))
    assert {r.position.epoch for r in results} == {first.position.epoch}


async def test_pipelined_publishes_fail_fast_while_redis_is_down(
    server: RedisServer, node: tuple[RedisBroker, EventLog]
) -> None:
    broker, _ = node
    server.kill()
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(broker.publish("room", pub(n), KEEP) for n in range(20)), return_exceptions=True
    )
    assert all(isinstance(o, BrokerError) for o in outcomes), outcomes
    assert time.monotonic() - started < 10  # within the socket timeouts, not a hang
