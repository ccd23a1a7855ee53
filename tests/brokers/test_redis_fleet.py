"""Several Redis broker instances (nodes) on one private Redis, and URL parsing."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.redis_servers import EventLog, RedisSentinel, RedisServer, redis_sentinel, redis_server
from wsfleet.brokers.base import HistoryOptions, HistoryQuery, NodeInfo, PublishOptions
from wsfleet.brokers.redis import RedisBroker, create_redis_broker
from wsfleet.brokers.redis_codec import ChannelKeys
from wsfleet.brokers.redis_url import parse_redis_url
from wsfleet.protocol.messages import ClientInfo, Publication, raw

HISTORY = HistoryOptions(size=100, ttl=60.0)
KEEP = PublishOptions(history=HISTORY)


def pub(n: int) -> Publication:
    return Publication(data=raw(b'{"n":%d}' % n))


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as started:
        yield started


_uids = itertools.count(1)


async def start(
    url: str, prefix: str = "fleet", *, ttl: float = 3600.0
) -> tuple[RedisBroker, EventLog]:
    """A started broker registered as a live node for ``ttl`` seconds."""
    uid = f"n{next(_uids)}"
    broker, _ = create_redis_broker(url, key_prefix=prefix, node_id=uid)
    recorder = EventLog()
    await broker.start(recorder)
    await broker.fleet.heartbeat(NodeInfo(uid=uid, name=uid), ttl=ttl)
    return broker, recorder


@pytest.fixture
async def two_nodes(
    server: RedisServer,
) -> AsyncIterator[tuple[tuple[RedisBroker, EventLog], tuple[RedisBroker, EventLog]]]:
    a, b = await start(server.url), await start(server.url)
    yield a, b
    await a[0].close()
    await b[0].close()


@pytest.mark.redis
async def test_two_nodes_receive_concurrent_publications_in_offset_order(two_nodes) -> None:
    (a, a_events), (b, b_events) = two_nodes
    await a.subscribe("orders")
    await b.subscribe("orders")
    # Both nodes publish at once; the script serializes them.
    await asyncio.gather(
        *(node.publish("orders", pub(i), KEEP) for i in range(50) for node in (a, b))
    )
    for events in (a_events, b_events):
        offsets = [e.position.offset for e in await events.take(100)]
        assert offsets == list(range(1, 101))


@pytest.mark.redis
async def test_idempotency_across_nodes_returns_the_first_result(two_nodes) -> None:
    (a, a_events), (b, _) = two_nodes
    await a.subscribe("idem")
    options = PublishOptions(history=HISTORY, idempotency_key="order-7")
    results = await asyncio.gather(
        a.publish("idem", pub(1), options), b.publish("idem", pub(1), options)
    )
    assert sorted(r.suppressed for r in results) == [False, True]
    assert results[0].position == results[1].position
    # Published once: the subscribed node hears it once.
    assert [e.position.offset for e in await a_events.barrier(a, "idem")] == [1]


@pytest.mark.redis
@pytest.mark.slow
async def test_presence_entries_expire_without_refresh(two_nodes) -> None:
    (a, _), (b, _) = two_nodes
    await a.add_presence("lobby", "c1", ClientInfo(user="u1", client="c1"), ttl=0.5)
    await b.add_presence("lobby", "c2", ClientInfo(user="u2", client="c2"), ttl=60)
    assert set(await b.presence("lobby")) == {"c1", "c2"}
    # Node a stops refreshing c1: its entry vanishes for everyone.
    await asyncio.sleep(0.8)
    assert set(await b.presence("lobby")) == {"c2"}
    assert await a.presence_stats("lobby") == (1, 1)


@pytest.mark.redis
async def test_presence_of_a_node_that_left_the_registry_is_not_answered(
    server: RedisServer,
) -> None:
    # The dead node's entries have a long TTL; they stop counting when its
    # registry entry expires, long before the TTL.
    dying, _ = await start(server.url)
    live, _ = await start(server.url)
    try:
        await dying.add_presence("hall", "d1", ClientInfo(user="ann", client="d1"), ttl=60)
        await dying.add_presence("hall", "d2", ClientInfo(user="bob", client="d2"), ttl=60)
        await live.add_presence("hall", "l1", ClientInfo(user="ann", client="l1"), ttl=60)
        assert set(await live.presence("hall")) == {"d1", "d2", "l1"}
        assert await live.presence_stats("hall") == (3, 2)
        # Its last heartbeat: the entry now lives 0.3 s (a shorter ttl replaces
        # a longer one), so the setup above never raced the expiry.
        await dying.fleet.heartbeat(NodeInfo(uid=dying.uid, name=dying.uid), ttl=0.3)
        await asyncio.sleep(0.6)
        assert set(await live.presence("hall")) == {"l1"}
        assert await live.presence_stats("hall") == (1, 1)
        # The entries are only hidden: a node that heartbeats again (back
        # from a partition) is answered again, minus what it removed.
        await dying.remove_presence("hall", "d1", "ann")
        await dying.fleet.heartbeat(NodeInfo(uid=dying.uid, name="back"), ttl=60)
        assert set(await live.presence("hall")) == {"d2", "l1"}
        assert await live.presence_stats("hall") == (2, 2)
    finally:
        await dying.close()
        await live.close()


@pytest.mark.redis
async def test_key_prefixes_isolate_fleets_on_one_redis(server: RedisServer) -> None:
    (x, x_events), (y, y_events) = (
        await start(server.url, "fleet-x"),
        await start(server.url, "fleet-y"),
    )
    try:
        await x.subscribe("shared")
        await y.subscribe("shared")
        await x.publish("shared", pub(1), KEEP)
        await x.add_presence("shared", "c1", ClientInfo(user="u"), ttl=60)
        assert (await y.history("shared", HistoryQuery(limit=-1), HISTORY)).publications == []
        assert await y.presence("shared") == {}
        assert await y_events.barrier(y, "shared") == []
        assert [e.pub.offset for e in await x_events.take(1) if e.pub] == [1]
        assert server.cli("keys", "fleet-y.stream.*").strip() == ""
        assert "fleet-x.stream.{shared}" in server.cli("keys", "fleet-x.*")
    finally:
        await x.close()
        await y.close()


def test_every_key_of_a_channel_shares_one_hash_tag() -> None:
    for channel in ("news", "chat:#42", "a{b}c", "}{", ""):
        keys = ChannelKeys("p", channel)
        names = [keys.stream, keys.meta, keys.idempotency_prefix + "k", keys.pubsub,
                 keys.presence_hash, keys.presence_expiry, keys.presence_users]  # fmt: skip
        tags = {name[name.index("{") + 1 : name.index("}")] for name in names}
        assert len(tags) == 1 and tags != {""}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6380/2", ("standalone", (("127.0.0.1", 6380),), False, 2, "")),
        ("redis://h", ("standalone", (("h", 6379),), False, 0, "")),
        ("rediss://user:p%40ss@h:7000/0", ("standalone", (("h", 7000),), True, 0, "")),
        (
            "redis+sentinel://s1:26379,s2:26380/mymaster?db=3",
            ("sentinel", (("s1", 26379), ("s2", 26380)), False, 3, "mymaster"),
        ),
        ("redis+sentinel://s1/mymaster", ("sentinel", (("s1", 26379),), False, 0, "mymaster")),
        (
            "redis+cluster://h1:7000,h2:7001",
            ("cluster", (("h1", 7000), ("h2", 7001)), False, 0, ""),
        ),
        ("rediss+cluster://h1:7000", ("cluster", (("h1", 7000),), True, 0, "")),
        ("redis://[::1]:7000/1", ("standalone", (("::1", 7000),), False, 1, "")),
    ],
)
def test_url_parsing(url: str, expected: tuple[object, ...]) -> None:
    target = parse_redis_url(url)
    assert (target.mode, target.hosts, target.tls, target.db, target.service_name) == expected


def test_url_credentials() -> None:
    target = parse_redis_url("rediss://user:p%40ss@h:7000/0")
    assert (target.username, target.password) == ("user", "p@ss")
    assert parse_redis_url("redis://secret@h").password == "secret"


@pytest.mark.parametrize(
    "url",
    ["http://h", "redis+sentinel://s1:26379", "redis+cluster://h1:7000/2", "redis://a:1,b:2",
     "redis://h/notanumber"],
)  # fmt: skip
def test_bad_urls_are_the_operators_fault(url: str) -> None:
    with pytest.raises(ValueError):
        parse_redis_url(url)


@pytest.fixture
def sentinel() -> Iterator[RedisSentinel]:
    with redis_sentinel() as started:
        yield started


@pytest.mark.redis
async def test_sentinel_url_finds_the_master_and_delivers(sentinel: RedisSentinel) -> None:
    broker, events = await start(sentinel.url)
    try:
        await broker.subscribe("via-sentinel")
        result = await broker.publish("via-sentinel", pub(1), KEEP)
        assert (await events.next()).position == result.position
        assert "fleet.meta.{via-sentinel}" in sentinel.master.cli("keys", "fleet.meta.*")
    finally:
        await broker.close()
