"""Publish and subscribe with the real SDK (JSON and Protobuf) and ``cent``."""

from __future__ import annotations

import cent

from tests.integration.clients import (
    BOTH_PROTOCOLS,
    api_client,
    payload,
    sdk_client,
    subscribed,
    value,
)
from tests.node_harness import RunningNode

PROTOCOL_PAIRS = [(False, False), (False, True), (True, False), (True, True)]


@BOTH_PROTOCOLS
async def test_api_publications_arrive_in_order(dev_node: RunningNode, protobuf: bool) -> None:
    async with sdk_client(dev_node, protobuf=protobuf) as client, api_client(dev_node) as api:
        _, events = await subscribed(client, "orders")
        offsets = []
        for n in range(1, 21):
            result = await api.publish(cent.PublishRequest(channel="orders", data={"n": n}))
            offsets.append(result.offset)
        pubs = await events.take("pub", 20)
        assert [value(p.data) for p in pubs] == [{"n": n} for n in range(1, 21)]
        assert [p.offset for p in pubs] == offsets == list(range(1, 21))
        assert all(p.info is None for p in pubs)  # an API publication has no publisher


@BOTH_PROTOCOLS
async def test_client_publications_arrive_in_order(dev_node: RunningNode, protobuf: bool) -> None:
    async with sdk_client(dev_node, protobuf=protobuf) as client:
        sub, events = await subscribed(client, "chat")
        for n in range(10):
            await sub.publish(payload({"n": n}, protobuf=protobuf))
        pubs = await events.take("pub", 10)
        assert [value(p.data)["n"] for p in pubs] == list(range(10))
        assert [p.offset for p in pubs] == list(range(1, 11))


@BOTH_PROTOCOLS
async def test_api_tags_reach_the_sdk(dev_node: RunningNode, protobuf: bool) -> None:
    async with sdk_client(dev_node, protobuf=protobuf) as client, api_client(dev_node) as api:
        _, events = await subscribed(client, "tagged")
        tags = {"kind": "price", "symbol": "ACME"}
        await api.publish(cent.PublishRequest(channel="tagged", data={"p": 1}, tags=tags))
        await api.publish(cent.PublishRequest(channel="tagged", data={"p": 2}))
        first, second = await events.take("pub", 2)
        assert first.tags == tags
        assert value(first.data) == {"p": 1}
        assert not second.tags


async def test_client_publication_info_names_the_publisher(dev_node: RunningNode) -> None:
    # Every pair of protocols: the publisher's payload and identity cross codecs.
    for sub_pb, pub_pb in PROTOCOL_PAIRS:
        channel = f"info-{int(sub_pb)}{int(pub_pb)}"
        async with (
            sdk_client(dev_node, protobuf=sub_pb) as subscriber,
            sdk_client(dev_node, protobuf=pub_pb) as publisher,
        ):
            _, events = await subscribed(subscriber, channel)
            await publisher.publish(channel, payload({"hello": "world"}, protobuf=pub_pb))
            pub = await events.next("pub")
            assert value(pub.data) == {"hello": "world"}
            assert pub.info is not None
            assert pub.info.client == publisher.client_id
            assert pub.info.client != subscriber.client_id
            assert pub.info.user == ""  # dev mode: anonymous


@BOTH_PROTOCOLS
async def test_broadcast_reaches_every_channel(dev_node: RunningNode, protobuf: bool) -> None:
    channels = ["bc:a", "bc:b", "bc:c"]
    async with sdk_client(dev_node, protobuf=protobuf) as client, api_client(dev_node) as api:
        recorders = [(await subscribed(client, ch))[1] for ch in channels]
        result = await api.broadcast(
            cent.BroadcastRequest(channels=channels, data={"all": True}, tags={"t": "1"})
        )
        assert len(result.responses) == 3
        assert all(r.error is None for r in result.responses)
        assert [r.result.offset for r in result.responses if r.result] == [1, 1, 1]
        for events in recorders:
            pub = await events.next("pub")
            assert value(pub.data) == {"all": True}
            assert pub.tags == {"t": "1"}


@BOTH_PROTOCOLS
async def test_idempotent_publish_is_delivered_once(dev_node: RunningNode, protobuf: bool) -> None:
    async with sdk_client(dev_node, protobuf=protobuf) as client, api_client(dev_node) as api:
        _, events = await subscribed(client, "idem")
        req = cent.PublishRequest(channel="idem", data={"pay": 1}, idempotency_key="k-1")
        first = await api.publish(req)
        second = await api.publish(req)
        assert second.offset == first.offset == 1
        assert second.epoch == first.epoch
        # A later publication without the key is the very next thing received.
        marker = await api.publish(cent.PublishRequest(channel="idem", data={"marker": 1}))
        assert marker.offset == 2
        got = await events.take("pub", 2)
        assert [value(p.data) for p in got] == [{"pay": 1}, {"marker": 1}]
        history = await api.history(cent.HistoryRequest(channel="idem", limit=-1))
        assert [p.offset for p in history.publications] == [1, 2]


@BOTH_PROTOCOLS
async def test_idempotent_broadcast_is_delivered_once(
    dev_node: RunningNode, protobuf: bool
) -> None:
    channels = ["ib:a", "ib:b"]
    async with sdk_client(dev_node, protobuf=protobuf) as client, api_client(dev_node) as api:
        recorders = [(await subscribed(client, ch))[1] for ch in channels]
        req = cent.BroadcastRequest(channels=channels, data={"x": 1}, idempotency_key="b-1")
        first = await api.broadcast(req)
        second = await api.broadcast(req)
        offsets = [(r.result.offset, r.result.epoch) for r in first.responses if r.result]
        again = [(r.result.offset, r.result.epoch) for r in second.responses if r.result]
        assert len(offsets) == 2
        assert offsets == again
        await api.broadcast(cent.BroadcastRequest(channels=channels, data={"marker": 1}))
        for events in recorders:
            got = await events.take("pub", 2)
            assert [value(p.data) for p in got] == [{"x": 1}, {"marker": 1}]
            assert [p.offset for p in got] == [1, 2]


async def test_publications_fan_out_to_many_subscribers_on_both_protocols(
    dev_node: RunningNode,
) -> None:
    async with (
        sdk_client(dev_node) as a,
        sdk_client(dev_node, protobuf=True) as b,
        sdk_client(dev_node) as c,
        api_client(dev_node) as api,
    ):
        recorders = [(await subscribed(client, "fan"))[1] for client in (a, b, c)]
        for n in range(5):
            await api.publish(cent.PublishRequest(channel="fan", data={"n": n}))
        for events in recorders:
            got = await events.take("pub", 5)
            assert [value(p.data)["n"] for p in got] == list(range(5))
