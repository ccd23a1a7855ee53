"""Subscriptions with a publication tags filter, end to end with the official SDK.

A filtered subscriber gets exactly the matching publications, live and
recovered after a reconnect, while an unfiltered subscriber of the same
channel gets all of them; a filter where none is allowed, a malformed one and
an oversized one close only the offender's connection with 3501.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import cent
import pytest
from centrifuge import Filter

from tests.integration.clients import (
    BOTH_PROTOCOLS,
    Abuse,
    Watcher,
    api_client,
    new_client,
    scrape,
    subscribed,
    value,
    with_watcher,
)
from tests.integration.raw import closed_with, pb_commands, raw_client
from tests.node_harness import RunningNode, running_node

MAX_NODES = 4

OPEN = {"allow_subscribe_for_anonymous": True, "history_size": 50, "history_ttl": 300}
CONFIG = {
    "auth": {"allow_anonymous_connect_without_token": True},
    "api": {"key": "dev"},
    "channel": {
        "without_namespace": OPEN,  # the watcher's channel
        "namespaces": [
            {"name": "quotes", "allow_tags_filter": True, **OPEN},
            {"name": "plain", **OPEN},
        ],
    },
}

AAPL_FROM_100 = Filter.all(Filter.eq("ticker", "AAPL"), Filter.gte("price", "100"))


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    async with running_node({"client.tags_filter_max_nodes": MAX_NODES}, config=CONFIG) as running:
        yield running


async def _quote(api: cent.AsyncClient, channel: str, n: int, **tags: str) -> None:
    await api.publish(cent.PublishRequest(channel=channel, data={"n": n}, tags=tags or None))


@BOTH_PROTOCOLS
async def test_only_matching_publications_live_and_recovered(
    node: RunningNode, protobuf: bool
) -> None:
    channel = "quotes:live"
    async with api_client(node) as api:
        everyone = new_client(node, protobuf=protobuf)
        filtered = new_client(node, protobuf=protobuf)
        await everyone.connect()
        await filtered.connect()
        try:
            _, all_events = await subscribed(everyone, channel)
            _, events = await subscribed(
                filtered, channel, recoverable=True, tags_filter=AAPL_FROM_100
            )
            await events.next("subscribed")
            await _quote(api, channel, 1, ticker="AAPL", price="90")
            await _quote(api, channel, 2, ticker="AAPL", price="120.5")
            await _quote(api, channel, 3, ticker="MSFT", price="130")
            await _quote(api, channel, 4)  # no tags at all
            await _quote(api, channel, 5, ticker="AAPL", price="1000")
            got = await events.take("pub", 2)
            assert [(value(p.data)["n"], p.offset) for p in got] == [(2, 2), (5, 5)]
            assert got[0].tags == {"ticker": "AAPL", "price": "120.5"}
            # The same channel, unfiltered: everything, in order.
            assert [p.offset for p in await all_events.take("pub", 5)] == [1, 2, 3, 4, 5]

            # Away and back: recovery brings only the matching ones it missed.
            await filtered.disconnect()
            await _quote(api, channel, 6, ticker="AAPL", price="100")
            await _quote(api, channel, 7, ticker="AAPL", price="99.99")
            await _quote(api, channel, 8, ticker="GOOG", price="500")
            await _quote(api, channel, 9, ticker="AAPL", price="101")
            await filtered.connect()
            again = await events.next("subscribed")
            assert again.was_recovering and again.recovered
            assert [p.offset for p in await events.take("pub", 2)] == [6, 9]

            # Live again after filtered-out publications: no gap is reported, nothing doubled.
            await _quote(api, channel, 10, ticker="MSFT", price="1")
            await _quote(api, channel, 11, ticker="AAPL", price="200")
            live = await events.next("pub")
            assert (value(live.data)["n"], live.offset) == (11, 11)
            assert events.events.pending("pub") == []
            assert filtered.state.value == "connected"
        finally:
            await filtered.disconnect()
            await everyone.disconnect()


async def _subscribe_raw(node: RunningNode, channel: str, tf: Any, *, protobuf: bool) -> int:
    command = {"id": 2, "subscribe": {"channel": channel, "tf": tf}}
    async with raw_client(node, protobuf=protobuf) as ws:
        await ws.send(pb_commands(command) if protobuf else json.dumps(command))
        code, received = await closed_with(ws)
        assert received == []  # no subscribe reply, no publication
        return code


def _abuse(channel: str, tf: Any, *, protobuf: bool = False) -> Abuse:
    async def abuse(node: RunningNode, watcher: Watcher) -> None:
        await watcher.publish()
        assert await _subscribe_raw(node, channel, tf, protobuf=protobuf) == 3501

    return abuse


EQ = {"key": "ticker", "cmp": "eq", "val": "AAPL"}
BAD_FILTERS = {
    "not_allowed_here": ("plain:x", EQ),
    "unknown_cmp": ("quotes:x", {"key": "a", "cmp": "like", "val": "x"}),
    "not_with_two_nodes": ("quotes:x", {"op": "not", "nodes": [EQ, EQ]}),
    "numeric_without_number": ("quotes:x", {"key": "price", "cmp": "gt", "val": "cheap"}),
    "over_the_node_bound": ("quotes:x", {"op": "or", "nodes": [EQ] * MAX_NODES}),
}


@pytest.mark.parametrize("case", list(BAD_FILTERS))
@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_a_bad_filter_closes_only_its_connection(
    node: RunningNode, case: str, protobuf: bool
) -> None:
    channel, tf = BAD_FILTERS[case]
    await with_watcher(node, _abuse(channel, tf, protobuf=protobuf))
    hits = (await scrape(node)).get('wsfleet_limit_hits_total{limit="tags_filter_nodes"}', 0)
    assert hits == (1 if case == "over_the_node_bound" else 0)
