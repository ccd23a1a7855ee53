"""Each per-connection limit, end to end: the offender gets its error or close
code, a watcher on the same node loses nothing, and the node keeps serving."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import cent
import pytest

from tests.integration.clients import (
    Watcher,
    api_client,
    scrape,
    sdk_client,
    subscribed,
    with_watcher,
)
from tests.integration.raw import closed_with, json_replies, raw_client
from tests.node_harness import RunningNode, running_node

LIMITS = {
    "dev": True,
    "client.max_subscriptions": 3,
    "client.max_pending_commands": 10,
    "client.max_connection_command_errors": 5,
    "client.history_max_publication_limit": 4,
    "client.outbox_max_bytes": 64 * 1024,
    # Generous: these tests are about the other limits.
    "client.command_rate_limit": 10_000,
    "client.command_burst": 10_000,
}


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    async with running_node(LIMITS) as running:
        yield running


async def test_subscriptions_over_the_limit_get_error_106(node: RunningNode) -> None:
    async def abuse(node: RunningNode, watcher: Watcher) -> None:
        async with raw_client(node) as ws:
            for i in range(2, 5):  # three subscriptions: the limit
                await ws.send(json.dumps({"id": i, "subscribe": {"channel": f"c{i}"}}))
                (reply,) = await json_replies(ws)
                assert reply["id"] == i and "subscribe" in reply
            await watcher.publish()
            await ws.send(json.dumps({"id": 5, "subscribe": {"channel": "one-too-many"}}))
            (reply,) = await json_replies(ws)
            assert (reply["id"], reply["error"]["code"]) == (5, 106)
            # The connection stays: unsubscribing makes room again.
            await ws.send(json.dumps({"id": 6, "unsubscribe": {"channel": "c2"}}))
            await ws.send(json.dumps({"id": 7, "subscribe": {"channel": "one-too-many"}}))
            replies = await json_replies(ws)
            while len(replies) < 2:
                replies += await json_replies(ws)
            assert [r["id"] for r in replies] == [6, 7] and "subscribe" in replies[1]
        assert node.node.stats.limit_hits["subscriptions"] == 1

    await with_watcher(node, abuse)
    metrics = await scrape(node)
    assert metrics['wsfleet_limit_hits_total{limit="subscriptions"}'] == 1
    assert metrics['wsfleet_command_errors_total{code="106"}'] == 1


async def test_a_backlog_of_pending_commands_closes_with_3013(node: RunningNode) -> None:
    async def abuse(node: RunningNode, watcher: Watcher) -> None:
        async with raw_client(node) as ws:
            # One frame of 20 commands: more than max_pending_commands queue at once.
            frame = "\n".join(json.dumps({"id": i, "ping": {}}) for i in range(2, 22))
            await ws.send(frame)
            await watcher.publish()
            code, _ = await closed_with(ws)
            assert code == 3013
        assert node.node.stats.limit_hits["pending_commands"] == 1

    await with_watcher(node, abuse)


async def test_errors_in_a_row_close_with_3509(node: RunningNode) -> None:
    async def abuse(node: RunningNode, watcher: Watcher) -> None:
        async with raw_client(node) as ws:
            for i in range(2, 7):  # five failing commands: rpc has no handlers (108)
                await ws.send(json.dumps({"id": i, "rpc": {"method": "m"}}))
            await watcher.publish()
            code, received = await closed_with(ws)
            assert code == 3509
            errors = [json.loads(line) for frame in received for line in frame.splitlines()]
            assert [e["error"]["code"] for e in errors] == [108] * 5

    await with_watcher(node, abuse)


async def test_a_success_resets_the_error_count(node: RunningNode) -> None:
    async with raw_client(node) as ws:
        for i in range(2, 30, 2):  # fourteen errors, never five in a row
            await ws.send(json.dumps({"id": i, "rpc": {"method": "m"}}))
            await ws.send(json.dumps({"id": i + 1, "ping": {}}))
            got = await json_replies(ws)
            while len(got) < 2:
                got += await json_replies(ws)
            assert [r["id"] for r in got] == [i, i + 1] and "ping" in got[1]
        assert ws.close_code is None


async def test_history_is_capped_at_the_configured_limit(node: RunningNode) -> None:
    async with sdk_client(node) as client, api_client(node) as api:
        for n in range(10):
            await api.publish(cent.PublishRequest(channel="capped", data={"n": n}))
        for asked in (-1, 100):
            page = await client.history("capped", limit=asked)
            assert [p.offset for p in page.publications] == [1, 2, 3, 4]
        assert [p.offset for p in (await client.history("capped", limit=2)).publications] == [1, 2]


async def test_a_client_that_stops_reading_is_closed_as_slow_and_others_lose_nothing(
    node: RunningNode,
) -> None:
    async def abuse(node: RunningNode, watcher: Watcher) -> None:
        # Two subscribers of one busy channel: one reads, one stops reading.
        # The silent one's socket buffers fill, then its outbox passes
        # outbox_max_bytes; the reader gets every publication.
        async with sdk_client(node) as reader, raw_client(node, max_queue=1) as silent:
            _, reading = await subscribed(reader, "firehose")
            await silent.send(json.dumps({"id": 2, "subscribe": {"channel": "firehose"}}))
            await json_replies(silent)
            # A batch stays well under the bound: only not reading can overflow it.
            big = cent.PublishRequest(channel="firehose", data={"blob": "x" * 12 * 1024})
            sent = 0
            async with api_client(node) as api:
                while not node.node.stats.outbox_overflows and sent < 4000:
                    await asyncio.gather(*(api.publish(big) for _ in range(4)))
                    sent += 4
                    if sent % 40 == 0:
                        await watcher.publish()
            assert node.node.stats.outbox_overflows == 1
            assert node.node.stats.disconnects[3008] == 1
            assert [p.offset for p in await reading.take("pub", sent)] == list(range(1, sent + 1))
            code, _ = await closed_with(silent)
            assert code == 3008

    await with_watcher(node, abuse)
    metrics = await scrape(node)
    assert metrics['wsfleet_limit_hits_total{limit="slow_consumer"}'] == 1
    assert metrics["wsfleet_outbox_overflows_total"] == 1
    assert metrics['wsfleet_disconnects_total{code="3008"}'] == 1


async def test_the_server_api_needs_a_user_or_a_client(node: RunningNode) -> None:
    async with sdk_client(node) as anonymous, api_client(node) as api:
        for call in (
            api.disconnect(cent.DisconnectRequest(user="")),
            api.subscribe(cent.SubscribeRequest(user="", channel="x")),
            api.unsubscribe(cent.UnsubscribeRequest(user="", channel="x")),
        ):
            with pytest.raises(cent.CentApiResponseError) as exc:
                await call
            assert exc.value.code == 107
        # An empty user never selects every anonymous connection by accident.
        assert anonymous.state.value == "connected"


async def test_presence_is_refreshed_while_the_client_stays() -> None:
    overrides = {"dev": True, "client.presence_ttl": 2, "client.presence_update_interval": 1}
    async with running_node(overrides) as node, sdk_client(node) as client:
        await subscribed(client, "room")
        await asyncio.sleep(3.5)  # well past one presence_ttl: only refreshes keep it
        presence = await client.presence("room")
        assert list(presence.clients) == [client.client_id]
