"""History, recovery after a reconnect, and fossil delta compression, end to end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import cent
import pytest
import websockets
from centrifuge import DeltaType, ReplyError, StreamPosition

from tests.integration.clients import (
    BOTH_PROTOCOLS,
    WAIT,
    api_client,
    new_client,
    payload,
    sdk_client,
    subscribed,
    value,
)
from tests.node_harness import RunningNode, running_node

NAMESPACES = {
    "channel": {
        "namespaces": [
            {"name": "feed", "history_size": 50, "history_ttl": 300},
            # Three publications kept: a client away for more misses some for good.
            {"name": "small", "history_size": 3, "history_ttl": 300},
            # Stream metadata forgotten one second after the last activity: a new epoch.
            {"name": "brief", "history_size": 50, "history_ttl": 300, "history_meta_ttl": 1},
            {
                "name": "delta",
                "history_size": 50,
                "history_ttl": 300,
                "allowed_delta_types": ["fossil"],
                "delta_publish": True,
            },
        ]
    }
}


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    async with running_node({"dev": True}, config=NAMESPACES) as running:
        yield running


async def _publish(api: cent.AsyncClient, channel: str, values: list[Any]) -> None:
    for v in values:
        await api.publish(cent.PublishRequest(channel=channel, data=v))


# -- history ---------------------------------------------------------------------------


@BOTH_PROTOCOLS
async def test_history_from_the_sdk(node: RunningNode, protobuf: bool) -> None:
    async with sdk_client(node, protobuf=protobuf) as client, api_client(node) as api:
        await _publish(api, "feed:h", [{"n": n} for n in range(1, 11)])

        everything = await client.history("feed:h", limit=-1)
        assert [value(p.data)["n"] for p in everything.publications] == list(range(1, 11))
        assert [p.offset for p in everything.publications] == list(range(1, 11))
        assert everything.offset == 10
        assert everything.epoch

        first = await client.history("feed:h", limit=3)
        assert [p.offset for p in first.publications] == [1, 2, 3]

        position_only = await client.history("feed:h", limit=0)
        assert position_only.publications == []
        assert (position_only.offset, position_only.epoch) == (10, everything.epoch)

        since = StreamPosition(offset=7, epoch=everything.epoch)
        after = await client.history("feed:h", limit=-1, since=since)
        assert [p.offset for p in after.publications] == [8, 9, 10]

        latest = await client.history("feed:h", limit=4, reverse=True)
        assert [p.offset for p in latest.publications] == [10, 9, 8, 7]

        before = await client.history("feed:h", limit=2, since=since, reverse=True)
        assert [p.offset for p in before.publications] == [6, 5]

        with pytest.raises(ReplyError) as err:
            await client.history("feed:h", limit=1, since=StreamPosition(3, "other-epoch"))
        assert err.value.code == 112  # unrecoverable position


async def test_history_from_cent(node: RunningNode) -> None:
    async with api_client(node) as api:
        await _publish(api, "feed:c", [{"n": n} for n in range(1, 6)])
        await api.publish(cent.PublishRequest(channel="feed:c", data={"n": 6}, tags={"a": "b"}))
        full = await api.history(cent.HistoryRequest(channel="feed:c", limit=-1))
        assert [p.data for p in full.publications] == [{"n": n} for n in range(1, 7)]
        assert full.publications[-1].tags == {"a": "b"}
        assert full.offset == 6

        since = cent.StreamPosition(offset=4, epoch=full.epoch)
        tail = await api.history(cent.HistoryRequest(channel="feed:c", limit=10, since=since))
        assert [p.offset for p in tail.publications] == [5, 6]

        newest = await api.history(cent.HistoryRequest(channel="feed:c", limit=2, reverse=True))
        assert [p.offset for p in newest.publications] == [6, 5]

        top = await api.history(cent.HistoryRequest(channel="feed:c"))
        assert top.publications == []
        assert (top.offset, top.epoch) == (6, full.epoch)


async def test_client_publication_in_history_keeps_its_publisher(node: RunningNode) -> None:
    async with sdk_client(node) as client, api_client(node) as api:
        await client.publish("feed:who", {"said": "hi"})
        history = await api.history(cent.HistoryRequest(channel="feed:who", limit=-1))
        (pub,) = history.publications
        assert pub.info is not None
        assert pub.info.client == client.client_id


# -- recovery ----------------------------------------------------------------------------


@BOTH_PROTOCOLS
async def test_recovery_after_reconnect_delivers_exactly_the_missed(
    node: RunningNode, protobuf: bool
) -> None:
    channel = "feed:recover"
    async with api_client(node) as api:
        client = new_client(node, protobuf=protobuf)
        await client.connect()
        sub, events = await subscribed(client, channel, recoverable=True)
        first = await events.next("subscribed")
        assert first.recoverable and not first.was_recovering
        await _publish(api, channel, [{"n": 1}, {"n": 2}])
        assert [p.offset for p in await events.take("pub", 2)] == [1, 2]

        await client.disconnect()
        await _publish(api, channel, [{"n": n} for n in range(3, 9)])
        await client.connect()
        try:
            again = await events.next("subscribed")
            assert again.was_recovering
            assert again.recovered
            missed = await events.take("pub", 6)
            assert [value(p.data)["n"] for p in missed] == list(range(3, 9))
            assert [p.offset for p in missed] == list(range(3, 9))
            # Live again: the next one follows, with nothing duplicated between.
            await _publish(api, channel, [{"n": 9}])
            live = await events.next("pub")
            assert (value(live.data), live.offset) == ({"n": 9}, 9)
            assert events.events.pending("pub") == []
        finally:
            await client.disconnect()


@pytest.mark.parametrize("how", ["server_close", "tcp_abort"])
@BOTH_PROTOCOLS
async def test_recovery_after_the_transport_dies(
    node: RunningNode, protobuf: bool, how: str
) -> None:
    channel = f"feed:killed-{how}"
    async with sdk_client(node, protobuf=protobuf) as client, api_client(node) as api:
        _, events = await subscribed(client, channel, recoverable=True)
        await events.next("subscribed")
        await _publish(api, channel, [{"n": 1}])
        await events.next("pub")
        if how == "server_close":
            # The server closes with a reconnect code (as a drain would).
            await api.disconnect(
                cent.DisconnectRequest(
                    user="",
                    client=client.client_id,
                    disconnect=cent.Disconnect(code=3011, reason="force reconnect"),
                )
            )
        else:
            # The TCP connection dies under the SDK, without a close frame.
            conn = client._conn
            assert conn is not None
            conn.transport.abort()
        # The SDK reconnects by itself while publications continue.
        resubscribing = await events.next("subscribing")
        assert resubscribing.code  # not subscribe(): the transport closed
        await _publish(api, channel, [{"n": n} for n in range(2, 6)])
        again = await events.next("subscribed")
        assert again.was_recovering
        assert again.recovered  # whether it came back before the publications or after
        got = [value(p.data)["n"] for p in await events.take("pub", 4)]
        assert got == [2, 3, 4, 5]


async def _away_after_one(
    node: RunningNode, api: cent.AsyncClient, channel: str
) -> tuple[Any, Any, Any]:
    """A recoverable subscriber that received publication 1 and then disconnected."""
    client = new_client(node)
    await client.connect()
    _, events = await subscribed(client, channel, recoverable=True)
    first = await events.next("subscribed")
    await _publish(api, channel, [{"n": 1}])
    await events.next("pub")
    await client.disconnect()
    return client, events, first


async def _assert_not_recovered_then_live(
    api: cent.AsyncClient, client: Any, events: Any, channel: str, top: int
) -> None:
    await client.connect()
    try:
        again = await events.next("subscribed")
        assert again.was_recovering
        assert not again.recovered
        assert again.stream_position is not None
        assert again.stream_position.offset == top
        # Nothing partial was replayed; live delivery resumes from the top.
        await _publish(api, channel, [{"n": top + 1}])
        live = await events.next("pub")
        assert live.offset == top + 1
        assert events.events.pending("pub") == []
    finally:
        await client.disconnect()


async def test_too_many_missed_is_not_recovered(node: RunningNode) -> None:
    channel = "small:gap"
    async with api_client(node) as api:
        client, events, _ = await _away_after_one(node, api, channel)
        await _publish(api, channel, [{"n": n} for n in range(2, 8)])  # 6 missed, 3 kept
        await _assert_not_recovered_then_live(api, client, events, channel, top=7)


async def test_a_gap_over_the_recovery_limit_is_not_recovered() -> None:
    # History keeps all 6 missed publications, but a recovery may return at most 3.
    limits = {"dev": True, "client.recovery_max_publication_limit": 3}
    async with running_node(limits, config=NAMESPACES) as node, api_client(node) as api:
        channel = "feed:limited"
        client, events, _ = await _away_after_one(node, api, channel)
        await _publish(api, channel, [{"n": n} for n in range(2, 8)])
        await _assert_not_recovered_then_live(api, client, events, channel, top=7)


async def test_new_epoch_is_not_recovered(node: RunningNode) -> None:
    channel = "brief:epoch"
    async with api_client(node) as api:
        client, events, first = await _away_after_one(node, api, channel)
        # The stream's metadata lives one second past its last activity; after
        # that the channel starts over in a new epoch.
        await asyncio.sleep(1.5)
        await _publish(api, channel, [{"n": 2}])
        await client.connect()
        try:
            again = await events.next("subscribed")
            assert again.was_recovering
            assert not again.recovered
            assert again.stream_position.epoch != first.stream_position.epoch
            assert again.stream_position.offset == 1
        finally:
            await client.disconnect()


# -- delta compression ---------------------------------------------------------------------


def _document(n: int) -> dict[str, Any]:
    """Similar documents: a long shared body and a small changing part."""
    return {"id": "sensor-7", "readings": list(range(100)), "seq": n, "note": "x" * 200}


@BOTH_PROTOCOLS
async def test_fossil_delta_subscription_gets_full_data(node: RunningNode, protobuf: bool) -> None:
    channel = "delta:doc"
    async with sdk_client(node, protobuf=protobuf) as client, api_client(node) as api:
        _, events = await subscribed(client, channel, delta=DeltaType.FOSSIL)
        for n in range(6):
            await api.publish(cent.PublishRequest(channel=channel, data=_document(n)))
        pubs = await events.take("pub", 6)
        assert [value(p.data) for p in pubs] == [_document(n) for n in range(6)]
        # The server did send deltas: the SDK saw the flag on the wire.
        assert pubs[0].delta is False
        assert all(p.delta for p in pubs[1:])


@BOTH_PROTOCOLS
async def test_fossil_delta_with_client_publications(node: RunningNode, protobuf: bool) -> None:
    channel = "delta:clientpub"
    async with (
        sdk_client(node, protobuf=protobuf) as client,
        sdk_client(node, protobuf=protobuf) as publisher,
    ):
        _, events = await subscribed(client, channel, delta=DeltaType.FOSSIL)
        plain_sub, plain = await subscribed(publisher, channel)  # no delta asked
        for n in range(5):
            await publisher.publish(channel, payload(_document(n), protobuf=protobuf))
        pubs = await events.take("pub", 5)
        assert [value(p.data) for p in pubs] == [_document(n) for n in range(5)]
        assert any(p.delta for p in pubs)
        plain_pubs = await plain.take("pub", 5)
        assert [value(p.data) for p in plain_pubs] == [_document(n) for n in range(5)]
        assert not any(p.delta for p in plain_pubs)


async def test_fossil_delta_recovery_then_live(node: RunningNode) -> None:
    channel = "delta:recover"
    async with api_client(node) as api:
        client = new_client(node)
        await client.connect()
        _, events = await subscribed(client, channel, delta=DeltaType.FOSSIL, recoverable=True)
        await events.next("subscribed")
        await api.publish(cent.PublishRequest(channel=channel, data=_document(0)))
        await events.next("pub")
        await client.disconnect()
        for n in range(1, 4):
            await api.publish(cent.PublishRequest(channel=channel, data=_document(n)))
        await client.connect()
        try:
            assert (await events.next("subscribed")).recovered
            recovered = await events.take("pub", 3)
            await api.publish(cent.PublishRequest(channel=channel, data=_document(4)))
            live = await events.next("pub")
            assert [value(p.data) for p in [*recovered, live]] == [
                _document(n) for n in range(1, 5)
            ]
            assert live.delta
        finally:
            await client.disconnect()


async def test_delta_flag_on_the_wire(node: RunningNode) -> None:
    """A raw JSON client sees ``delta: true`` and a string payload on later publications."""
    channel = "delta:raw"
    async with websockets.connect(node.ws_url, proxy=None) as ws, api_client(node) as api:
        await ws.send(json.dumps({"id": 1, "connect": {}}))
        assert "connect" in json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        await ws.send(json.dumps({"id": 2, "subscribe": {"channel": channel, "delta": "fossil"}}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert reply["subscribe"]["delta"] is True
        for n in range(3):
            await api.publish(cent.PublishRequest(channel=channel, data=_document(n)))
        pushes: list[dict[str, Any]] = []
        while len(pushes) < 3:
            frame = await asyncio.wait_for(ws.recv(), WAIT)
            pushes += [json.loads(line) for line in frame.splitlines() if line.strip()]
        pubs = [p["push"]["pub"] for p in pushes if "push" in p]
        assert [p.get("delta", False) for p in pubs] == [False, True, True]
        assert all(isinstance(p["data"], str) for p in pubs)
        assert json.loads(pubs[0]["data"]) == _document(0)
        assert len(pubs[1]["data"]) < len(json.dumps(_document(1)))
