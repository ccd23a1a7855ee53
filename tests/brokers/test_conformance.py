"""The broker conformance suite: the rules of ``wsfleet.brokers.base``, as tests.

Every backend in ``conftest.BACKENDS`` runs every test here. Tests speak only
the contract (Broker, PresenceManager, the handler callbacks), await deliveries
instead of assuming them synchronous, and move time through the factory.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from wsfleet.brokers.base import (
    NO_HISTORY,
    HistoryOptions,
    HistoryQuery,
    PublishOptions,
    PublishResult,
)
from wsfleet.protocol.messages import EMPTY, ClientInfo, Publication, StreamPosition, raw

HISTORY = HistoryOptions(size=10, ttl=300.0)
KEEP = PublishOptions(history=HISTORY)
ALL = HistoryQuery(limit=-1)


def pub(n: int) -> Publication:
    return Publication(data=raw(b'{"n":%d}' % n))


def numbers(pubs: list[Publication]) -> list[int]:
    """The ``n`` of each test publication, to compare pages by content."""
    return [msgspec.json.decode(p.data)["n"] for p in pubs]


async def publish_many(broker, channel, count, options=KEEP) -> list[PublishResult]:
    return [await broker.publish(channel, pub(n), options) for n in range(1, count + 1)]


# -- offsets and epochs -------------------------------------------------------------


async def test_offsets_start_at_1_and_grow_by_1(node, channel: str) -> None:
    results = await publish_many(node.broker, channel, 5)
    assert [r.position.offset for r in results] == [1, 2, 3, 4, 5]
    assert not any(r.suppressed for r in results)


async def test_epoch_is_stable_across_publishes(node, channel: str) -> None:
    results = await publish_many(node.broker, channel, 5)
    epochs = {r.position.epoch for r in results}
    assert len(epochs) == 1
    assert epochs != {""}
    page = await node.broker.history(channel, ALL, HISTORY)
    assert page.position == results[-1].position


async def test_reading_an_empty_stream_fixes_the_epoch_the_first_publish_keeps(
    node, channel: str
) -> None:
    # A client subscribing to an empty channel is told this position; the
    # first publication must not move it to another epoch or it never recovers.
    page = await node.broker.history(channel, HistoryQuery(), HISTORY)
    assert page.publications == []
    assert page.position.offset == 0
    assert page.position.epoch != ""
    result = await node.broker.publish(channel, pub(1), KEEP)
    assert result.position == StreamPosition(offset=1, epoch=page.position.epoch)


# -- history retention -----------------------------------------------------------


async def test_history_keeps_only_the_newest_size_publications(node, channel: str) -> None:
    options = PublishOptions(history=HistoryOptions(size=3, ttl=300.0))
    results = await publish_many(node.broker, channel, 5, options)
    page = await node.broker.history(channel, ALL, options.history)
    assert [p.offset for p in page.publications] == [3, 4, 5]
    assert numbers(page.publications) == [3, 4, 5]
    assert page.position == results[-1].position


@pytest.mark.advances_time
async def test_history_ttl_drops_publications_but_keeps_the_position(
    node, broker_factory, channel: str
) -> None:
    options = PublishOptions(history=HistoryOptions(size=10, ttl=1.0))
    results = await publish_many(node.broker, channel, 3, options)
    await broker_factory.advance(1.5)
    page = await node.broker.history(channel, ALL, options.history)
    assert page.publications == []
    assert page.position == results[-1].position
    after = await node.broker.publish(channel, pub(4), options)
    assert after.position == StreamPosition(offset=4, epoch=results[0].position.epoch)
    page = await node.broker.history(channel, ALL, options.history)
    assert [p.offset for p in page.publications] == [4]


async def test_remove_history_empties_the_stream_but_keeps_its_position(node, channel: str) -> None:
    results = await publish_many(node.broker, channel, 3)
    await node.broker.remove_history(channel)
    page = await node.broker.history(channel, ALL, HISTORY)
    assert page.publications == []
    assert page.position == results[-1].position
    after = await node.broker.publish(channel, pub(4), KEEP)
    assert after.position == StreamPosition(offset=4, epoch=results[0].position.epoch)


@pytest.mark.advances_time
async def test_expired_meta_starts_a_new_epoch_from_offset_1(
    node, broker_factory, channel: str
) -> None:
    options = PublishOptions(history=HistoryOptions(size=10, ttl=1.0, meta_ttl=2.0))
    first = await publish_many(node.broker, channel, 3, options)
    await broker_factory.advance(3.0)
    again = await node.broker.publish(channel, pub(4), options)
    assert again.position.offset == 1
    assert again.position.epoch not in ("", first[0].position.epoch)
    page = await node.broker.history(channel, ALL, options.history)
    assert numbers(page.publications) == [4]
    assert page.position == again.position


@pytest.mark.advances_time
async def test_meta_outlives_publications_within_meta_ttl(
    node, broker_factory, channel: str
) -> None:
    options = PublishOptions(history=HistoryOptions(size=10, ttl=1.0, meta_ttl=60.0))
    first = await publish_many(node.broker, channel, 2, options)
    await broker_factory.advance(1.5)
    again = await node.broker.publish(channel, pub(3), options)
    assert again.position == StreamPosition(offset=3, epoch=first[0].position.epoch)


# -- history queries -------------------------------------------------------------

# (since offset or None, limit, reverse) -> expected offsets, on a stream of 1..5
QUERIES = {
    "all": (None, -1, False, [1, 2, 3, 4, 5]),
    "limit-0-gives-only-the-position": (None, 0, False, []),
    "limit-2-oldest-first": (None, 2, False, [1, 2]),
    "limit-above-kept": (None, 50, False, [1, 2, 3, 4, 5]),
    "reverse-all": (None, -1, True, [5, 4, 3, 2, 1]),
    "reverse-limit-2-newest": (None, 2, True, [5, 4]),
    "since-0": (0, -1, False, [1, 2, 3, 4, 5]),
    "since-2": (2, -1, False, [3, 4, 5]),
    "since-2-limit-2": (2, 2, False, [3, 4]),
    "since-2-limit-0": (2, 0, False, []),
    # reverse with since pages backwards: publications *before* since, newest first
    "since-2-reverse": (2, -1, True, [1]),
    "since-4-reverse-limit-2": (4, 2, True, [3, 2]),
    "since-top": (5, -1, False, []),
    "since-top-reverse": (5, -1, True, [4, 3, 2, 1]),
    "since-past-top-reverse": (9, 2, True, [5, 4]),
    "since-in-the-future": (9, -1, False, []),
}


@pytest.mark.parametrize(("since", "limit", "reverse", "expected"), QUERIES.values(), ids=QUERIES)
async def test_history_query(
    node, channel: str, since: int | None, limit: int, reverse: bool, expected: list[int]
) -> None:
    results = await publish_many(node.broker, channel, 5)
    top = results[-1].position
    query = HistoryQuery(
        since=None if since is None else StreamPosition(offset=since, epoch=top.epoch),
        limit=limit,
        reverse=reverse,
    )
    page = await node.broker.history(channel, query, HISTORY)
    assert [p.offset for p in page.publications] == expected
    assert numbers(page.publications) == expected
    assert page.position == top


async def test_history_since_another_epoch_still_answers_with_the_position(
    node, channel: str
) -> None:
    results = await publish_many(node.broker, channel, 3)
    query = HistoryQuery(since=StreamPosition(offset=1, epoch="some-other-epoch"), limit=-1)
    page = await node.broker.history(channel, query, HISTORY)
    assert page.position == results[-1].position


# -- publications ----------------------------------------------------------------


async def test_publication_fields_round_trip(node, channel: str) -> None:
    await node.broker.subscribe(channel)
    sent = Publication(
        data=raw(b'{"text":"h\\u00e9llo","list":[1,2]}'),
        info=ClientInfo(
            user="u1",
            client="c1",
            conn_info=raw(b'{"name":"Ann"}'),
            chan_info=raw(b'{"role":"admin"}'),
        ),
        tags={"kind": "greeting", "lang": "fr"},
        time=1_700_000_000_123,
    )
    result = await node.broker.publish(channel, sent, KEEP)
    expected = Publication(data=sent.data, info=sent.info, offset=1, tags=sent.tags, time=sent.time)
    event = await node.events.next()
    assert event.kind == "publication"
    assert event.channel == channel
    assert event.pub == expected
    assert event.position == result.position
    page = await node.broker.history(channel, ALL, HISTORY)
    assert page.publications == [expected]


async def test_concurrent_publishes_keep_the_order_they_were_made_in(node, channel: str) -> None:
    # The server API starts a batch's publications without awaiting each one; the
    # broker must still apply and deliver them in call order.
    await node.broker.subscribe(channel)
    plain = PublishOptions()
    results = await asyncio.gather(
        *(node.broker.publish(channel, pub(n), KEEP if n % 2 else plain) for n in range(1, 201))
    )
    kept = [r.position.offset for r in results if r.position.offset]
    assert kept == list(range(1, 101))
    events = await node.events.take(200)
    assert [msgspec.json.decode(e.pub.data)["n"] for e in events] == list(range(1, 201))


async def test_minimal_publication_round_trips_with_empty_payloads(node, channel: str) -> None:
    await node.broker.subscribe(channel)
    await node.broker.publish(channel, Publication(data=raw(b"1")), KEEP)
    delivered = (await node.events.next()).pub
    stored = (await node.broker.history(channel, ALL, HISTORY)).publications[0]
    for p in (delivered, stored):
        assert p == Publication(data=raw(b"1"), offset=1)
        assert p.info is None
        assert p.tags is None


async def test_publish_without_history_is_fanned_out_with_offset_0(node, channel: str) -> None:
    await node.broker.subscribe(channel)
    result = await node.broker.publish(channel, pub(1), PublishOptions(history=NO_HISTORY))
    assert result.position.offset == 0
    event = await node.events.next()
    assert event.pub is not None
    assert event.pub.offset == 0
    assert numbers([event.pub]) == [1]
    page = await node.broker.history(channel, ALL, HISTORY)
    assert page.publications == []
    assert page.position.offset == 0


async def test_broker_assigns_the_offset_whatever_the_publication_says(node, channel: str) -> None:
    first = await node.broker.publish(channel, Publication(data=raw(b"1"), offset=99), KEEP)
    assert first.position.offset == 1
    page = await node.broker.history(channel, ALL, HISTORY)
    assert [p.offset for p in page.publications] == [1]


# -- delivery --------------------------------------------------------------------


async def test_only_subscribed_channels_deliver(node, make_channel) -> None:
    subscribed, other = make_channel(), make_channel()
    await node.broker.subscribe(subscribed)
    result = await node.broker.publish(other, pub(1), KEEP)
    # History is kept whether or not anyone listens.
    assert result.position.offset == 1
    page = await node.broker.history(other, ALL, HISTORY)
    assert numbers(page.publications) == [1]
    assert await node.events.barrier(node.broker, subscribed) == []


async def test_delivered_position_matches_history(node, channel: str) -> None:
    await node.broker.subscribe(channel)
    result = await node.broker.publish(channel, pub(1), KEEP)
    event = await node.events.next()
    assert event.position == result.position
    assert event.pub is not None
    assert event.pub.offset == result.position.offset
    page = await node.broker.history(channel, ALL, HISTORY)
    assert page.publications == [event.pub]


async def test_unsubscribe_stops_delivery(node, make_channel) -> None:
    channel, control = make_channel(), make_channel()
    await node.broker.subscribe(channel)
    await node.broker.subscribe(control)
    await node.broker.publish(channel, pub(1), KEEP)
    assert numbers([(await node.events.next()).pub]) == [1]
    await node.broker.unsubscribe(channel)
    await node.broker.publish(channel, pub(2), KEEP)
    assert await node.events.barrier(node.broker, control) == []
    page = await node.broker.history(channel, ALL, HISTORY)
    assert numbers(page.publications) == [1, 2]


async def test_resubscribe_delivers_again(node, channel: str) -> None:
    await node.broker.subscribe(channel)
    await node.broker.unsubscribe(channel)
    await node.broker.subscribe(channel)
    await node.broker.publish(channel, pub(1), KEEP)
    assert numbers([(await node.events.next()).pub]) == [1]


async def test_rapid_publishes_are_delivered_in_offset_order(node, channel: str) -> None:
    await node.broker.subscribe(channel)
    options = PublishOptions(history=HistoryOptions(size=1000, ttl=300.0))
    results = await asyncio.gather(
        *(node.broker.publish(channel, pub(n), options) for n in range(500))
    )
    by_offset = {r.position.offset: n for n, r in enumerate(results)}
    events = await node.events.take(500)
    offsets = [e.pub.offset for e in events]
    assert offsets == list(range(1, 501))
    # Each delivered publication is the one published at that offset.
    assert numbers([e.pub for e in events]) == [by_offset[o] for o in offsets]
    assert [e.position.offset for e in events] == offsets


async def test_concurrent_publishes_get_distinct_consecutive_offsets(node, channel: str) -> None:
    options = PublishOptions(history=HistoryOptions(size=100, ttl=300.0))
    results = await asyncio.gather(
        *(node.broker.publish(channel, pub(n), options) for n in range(50))
    )
    assert sorted(r.position.offset for r in results) == list(range(1, 51))
    assert len({r.position.epoch for r in results}) == 1
    page = await node.broker.history(channel, ALL, options.history)
    assert [p.offset for p in page.publications] == list(range(1, 51))
    by_offset = {r.position.offset: n for n, r in enumerate(results)}
    assert numbers(page.publications) == [by_offset[o] for o in range(1, 51)]


# -- idempotency -------------------------------------------------------------------


async def test_idempotent_repeat_is_suppressed_and_not_delivered(node, channel: str) -> None:
    await node.broker.subscribe(channel)
    options = PublishOptions(history=HISTORY, idempotency_key="order-42")
    first = await node.broker.publish(channel, pub(1), options)
    repeat = await node.broker.publish(channel, pub(2), options)
    assert not first.suppressed
    assert repeat.suppressed
    assert repeat.position == first.position
    delivered = await node.events.barrier(node.broker, channel)
    assert [numbers([e.pub]) for e in delivered] == [[1]]
    page = await node.broker.history(channel, ALL, HISTORY)
    assert numbers(page.publications) == [1]


async def test_idempotency_keys_are_per_channel(node, make_channel) -> None:
    a, b = make_channel(), make_channel()
    options = PublishOptions(history=HISTORY, idempotency_key="same-key")
    await node.broker.publish(a, pub(1), options)
    other = await node.broker.publish(b, pub(1), options)
    assert not other.suppressed
    assert other.position.offset == 1


async def test_different_idempotency_keys_both_publish(node, channel: str) -> None:
    one = await node.broker.publish(
        channel, pub(1), PublishOptions(history=HISTORY, idempotency_key="k1")
    )
    two = await node.broker.publish(
        channel, pub(2), PublishOptions(history=HISTORY, idempotency_key="k2")
    )
    assert (one.position.offset, two.position.offset) == (1, 2)
    assert not two.suppressed


@pytest.mark.advances_time
async def test_idempotency_key_expires_after_its_ttl(node, broker_factory, channel: str) -> None:
    options = PublishOptions(history=HISTORY, idempotency_key="k", idempotent_ttl=1.0)
    await node.broker.publish(channel, pub(1), options)
    await broker_factory.advance(1.5)
    again = await node.broker.publish(channel, pub(2), options)
    assert not again.suppressed
    assert again.position.offset == 2


# -- delta ---------------------------------------------------------------------------


async def test_delta_publish_gets_the_previous_publication(node, channel: str) -> None:
    await node.broker.subscribe(channel)
    delta = PublishOptions(history=HISTORY, delta=True)
    await node.broker.publish(channel, pub(1), delta)
    await node.broker.publish(channel, pub(2), delta)
    await node.broker.publish(channel, pub(3), KEEP)
    first, second, third = await node.events.take(3)
    assert first.prev is None  # nothing before it in the stream
    assert second.prev is not None
    assert second.prev.offset == 1
    assert numbers([second.prev]) == [1]
    assert third.prev is None  # no delta asked for


# -- join and leave ----------------------------------------------------------------


async def test_join_and_leave_are_delivered_to_subscribed_channels(node, make_channel) -> None:
    channel, other = make_channel(), make_channel()
    await node.broker.subscribe(channel)
    info = ClientInfo(user="u1", client="c1", conn_info=raw(b'{"a":1}'), chan_info=EMPTY)
    await node.broker.publish_join(other, info)
    await node.broker.publish_join(channel, info)
    await node.broker.publish_leave(channel, info)
    join, leave = await node.events.take(2)
    assert (join.kind, join.channel, join.info) == ("join", channel, info)
    assert (leave.kind, leave.channel, leave.info) == ("leave", channel, info)
    assert await node.events.barrier(node.broker, channel) == []


# -- presence ------------------------------------------------------------------------


def client(user: str, client_id: str) -> ClientInfo:
    return ClientInfo(user=user, client=client_id, conn_info=raw(b'{"u":"%s"}' % user.encode()))


async def test_presence_add_and_stats_count_distinct_users(node, channel: str) -> None:
    a1, a2, b1 = client("alice", "c1"), client("alice", "c2"), client("bob", "c3")
    for info in (a1, a2, b1):
        await node.presence.add_presence(channel, info.client, info, ttl=60.0)
    assert await node.presence.presence(channel) == {"c1": a1, "c2": a2, "c3": b1}
    assert await node.presence.presence_stats(channel) == (3, 2)


async def test_presence_of_an_empty_channel(node, channel: str) -> None:
    assert await node.presence.presence(channel) == {}
    assert await node.presence.presence_stats(channel) == (0, 0)


async def test_presence_remove(node, channel: str) -> None:
    a1, a2 = client("alice", "c1"), client("alice", "c2")
    await node.presence.add_presence(channel, "c1", a1, ttl=60.0)
    await node.presence.add_presence(channel, "c2", a2, ttl=60.0)
    await node.presence.remove_presence(channel, "c1", "alice")
    assert await node.presence.presence(channel) == {"c2": a2}
    assert await node.presence.presence_stats(channel) == (1, 1)
    await node.presence.remove_presence(channel, "c2", "alice")
    assert await node.presence.presence_stats(channel) == (0, 0)
    # Removing what is not there is not an error.
    await node.presence.remove_presence(channel, "c2", "alice")


async def test_presence_add_updates_the_entry(node, channel: str) -> None:
    await node.presence.add_presence(channel, "c1", client("alice", "c1"), ttl=60.0)
    changed = ClientInfo(user="alice", client="c1", chan_info=raw(b'{"typing":true}'))
    await node.presence.add_presence(channel, "c1", changed, ttl=60.0)
    assert await node.presence.presence(channel) == {"c1": changed}


@pytest.mark.advances_time
async def test_presence_entries_expire_unless_refreshed(node, broker_factory, channel: str) -> None:
    short, kept = client("alice", "c1"), client("alice", "c2")
    refreshed = client("bob", "c3")
    await node.presence.add_presence(channel, "c1", short, ttl=1.0)
    await node.presence.add_presence(channel, "c2", kept, ttl=60.0)
    await node.presence.add_presence(channel, "c3", refreshed, ttl=2.0)
    await broker_factory.advance(1.5)
    await node.presence.add_presence(channel, "c3", refreshed, ttl=2.0)
    assert await node.presence.presence(channel) == {"c2": kept, "c3": refreshed}
    assert await node.presence.presence_stats(channel) == (2, 2)
    await broker_factory.advance(1.0)  # past c3's first expiry, within its refresh
    assert await node.presence.presence(channel) == {"c2": kept, "c3": refreshed}
    await broker_factory.advance(1.5)
    assert await node.presence.presence(channel) == {"c2": kept}
    assert await node.presence.presence_stats(channel) == (1, 1)


# -- across nodes ------------------------------------------------------------------


async def test_publication_reaches_a_subscribed_peer(node, peer, channel: str) -> None:
    await peer.broker.subscribe(channel)
    result = await node.broker.publish(channel, pub(1), KEEP)
    event = await peer.events.next()
    assert event.position == result.position
    assert numbers([event.pub]) == [1]
    page = await peer.broker.history(channel, ALL, HISTORY)
    assert page.position == result.position


async def test_peers_deliver_in_offset_order(node, peer, channel: str) -> None:
    await peer.broker.subscribe(channel)
    options = PublishOptions(history=HistoryOptions(size=1000, ttl=300.0))
    await asyncio.gather(
        *(node.broker.publish(channel, pub(n), options) for n in range(100)),
        *(peer.broker.publish(channel, pub(n), options) for n in range(100, 200)),
    )
    events = await peer.events.take(200)
    assert [e.pub.offset for e in events] == list(range(1, 201))


async def test_join_and_leave_reach_a_peer(node, peer, channel: str) -> None:
    await peer.broker.subscribe(channel)
    info = client("alice", "c1")
    await node.broker.publish_join(channel, info)
    await node.broker.publish_leave(channel, info)
    join, leave = await peer.events.take(2)
    assert (join.kind, join.info) == ("join", info)
    assert (leave.kind, leave.info) == ("leave", info)


async def test_presence_is_fleet_wide(node, peer, channel: str) -> None:
    await node.presence.add_presence(channel, "c1", client("alice", "c1"), ttl=60.0)
    await peer.presence.add_presence(channel, "c2", client("alice", "c2"), ttl=60.0)
    assert set(await node.presence.presence(channel)) == {"c1", "c2"}
    assert await peer.presence.presence_stats(channel) == (2, 1)


async def test_idempotency_is_fleet_wide(node, peer, channel: str) -> None:
    options = PublishOptions(history=HISTORY, idempotency_key="k")
    first = await node.broker.publish(channel, pub(1), options)
    repeat = await peer.broker.publish(channel, pub(1), options)
    assert repeat.suppressed
    assert repeat.position == first.position


async def test_unsubscribed_peer_gets_nothing(node, peer, make_channel) -> None:
    channel, control = make_channel(), make_channel()
    await peer.broker.subscribe(control)
    await node.broker.publish(channel, pub(1), KEEP)
    # The barrier is published by the peer itself; the first publish already
    # returned, so had it been routed to the peer it would be queued first.
    assert await peer.events.barrier(peer.broker, control) == []
