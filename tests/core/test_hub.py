from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from wsfleet.brokers.memory import MemoryBroker
from wsfleet.core.hub import Hub, Subscription, SubState
from wsfleet.core.stats import NodeStats
from wsfleet.protocol.codec import JSON, PROTOBUF, Codec
from wsfleet.protocol.fossil import apply_delta
from wsfleet.protocol.messages import Publication, Reply, StreamPosition, raw


class CountingCodec:
    """Wraps a codec and counts encodings, to prove encode-once fan-out."""

    def __init__(self, inner: Codec) -> None:
        self.inner = inner
        self.name = inner.name
        self.binary = inner.binary
        self.separator = inner.separator
        self.encodes = 0

    def encode_reply(self, reply: Reply) -> bytes:
        self.encodes += 1
        return self.inner.encode_reply(reply)


@dataclass(eq=False)
class FakeConn:
    codec: object
    sent: list[bytes] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)

    def send_encoded(self, data: bytes) -> None:
        self.sent.append(data)

    def on_insufficient_state(self, sub: Subscription) -> None:
        self.gaps.append(sub.channel)


async def subscribed(hub: Hub, conn: FakeConn, channel: str, **kw: bool) -> Subscription:
    sub = Subscription(conn, channel, **kw)  # type: ignore[arg-type]
    await hub.add(sub)
    sub.state = SubState.SUBSCRIBED
    return sub


def pub(offset: int, data: bytes = b'{"v":1}') -> Publication:
    return Publication(offset=offset, data=raw(data))


async def test_each_publication_is_encoded_once_per_wire_format() -> None:
    hub = Hub(MemoryBroker(), NodeStats())
    json_codec, pb_codec = CountingCodec(JSON), CountingCodec(PROTOBUF)
    conns = [FakeConn(json_codec) for _ in range(50)] + [FakeConn(pb_codec) for _ in range(50)]
    for c in conns:
        await subscribed(hub, c, "ch")
    hub.on_publication("ch", pub(1), StreamPosition(1, "e"), None)
    assert json_codec.encodes == 1 and pb_codec.encodes == 1
    assert all(len(c.sent) == 1 for c in conns)
    assert len({c.sent[0] for c in conns if c.codec is json_codec}) == 1


async def test_first_and_last_local_subscriber_drive_the_broker_subscription() -> None:
    broker = MemoryBroker()
    hub = Hub(broker, NodeStats())
    a, b = FakeConn(JSON), FakeConn(JSON)
    sa = await subscribed(hub, a, "ch")
    sb = await subscribed(hub, b, "ch")
    assert hub.broker_channels() == {"ch"}
    await hub.remove(sa)
    assert hub.broker_channels() == {"ch"}
    await hub.remove(sb)
    assert hub.broker_channels() == set()


async def test_a_gap_in_offsets_asks_for_resync_instead_of_skipping() -> None:
    hub = Hub(MemoryBroker(), NodeStats())
    conn = FakeConn(JSON)
    sub = await subscribed(hub, conn, "ch", positioned=True)
    sub.offset, sub.epoch = 1, "e"
    hub.on_publication("ch", pub(2), StreamPosition(2, "e"), None)
    hub.on_publication("ch", pub(4), StreamPosition(4, "e"), None)  # 3 never arrived
    assert len(conn.sent) == 1 and conn.gaps == ["ch"]


async def test_a_new_epoch_asks_for_resync() -> None:
    hub = Hub(MemoryBroker(), NodeStats())
    conn = FakeConn(JSON)
    sub = await subscribed(hub, conn, "ch", positioned=True)
    sub.offset, sub.epoch = 7, "old"
    hub.on_publication("ch", pub(1), StreamPosition(1, "new"), None)
    assert conn.sent == [] and conn.gaps == ["ch"]


async def test_duplicates_are_dropped() -> None:
    hub = Hub(MemoryBroker(), NodeStats())
    conn = FakeConn(JSON)
    sub = await subscribed(hub, conn, "ch", positioned=True)
    sub.offset, sub.epoch = 3, "e"
    hub.on_publication("ch", pub(3), StreamPosition(3, "e"), None)
    assert conn.sent == [] and conn.gaps == []


async def test_publications_are_buffered_while_subscribing() -> None:
    hub = Hub(MemoryBroker(), NodeStats())
    conn = FakeConn(JSON)
    sub = Subscription(conn, "ch")  # type: ignore[arg-type]
    await hub.add(sub)
    hub.on_publication("ch", pub(1), StreamPosition(1, "e"), None)
    assert conn.sent == [] and len(sub.buffer) == 1


async def test_delta_subscribers_get_a_fossil_delta_against_the_base_they_hold() -> None:
    hub = Hub(MemoryBroker(), NodeStats())
    conn = FakeConn(PROTOBUF)
    plain = FakeConn(PROTOBUF)
    sub = await subscribed(hub, conn, "ch", delta=True)
    await subscribed(hub, plain, "ch")
    first = b'{"price": 100, "name": "a long enough name to make deltas pay off"}'
    second = b'{"price": 101, "name": "a long enough name to make deltas pay off"}'
    hub.on_publication("ch", pub(1, first), StreamPosition(1, "e"), None)
    hub.on_publication("ch", pub(2, second), StreamPosition(2, "e"), pub(1, first))
    replies = [PROTOBUF.decode_replies(f)[0] for f in conn.sent]
    p1, p2 = (r.push.pub for r in replies if r.push and r.push.pub)
    assert not p1.delta and bytes(p1.data) == first
    assert p2.delta and apply_delta(first, bytes(p2.data)) == second
    assert len(p2.data) < len(second)
    assert sub.delta_base == 2
    plain_pubs = [PROTOBUF.decode_replies(f)[0].push.pub for f in plain.sent]
    assert [bytes(p.data) for p in plain_pubs if p] == [first, second]


async def test_json_delta_subscribers_get_payloads_as_json_strings() -> None:
    hub = Hub(MemoryBroker(), NodeStats())
    conn = FakeConn(JSON)
    await subscribed(hub, conn, "ch", delta=True)
    hub.on_publication("ch", pub(1, b'{"a":1}'), StreamPosition(1, "e"), None)
    reply = msgspec.json.decode(conn.sent[0])
    assert reply["push"]["pub"]["data"] == '{"a":1}'
