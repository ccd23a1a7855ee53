"""Three node processes on one Redis deliver every publication to every subscriber, in order.

What this proves: a publication made through any node's server API reaches
the subscribers of every node (the Redis fan-out), each subscriber gets all
of them exactly once and in the same order, and the offsets clients see are
the channel's single stream (1, 2, 3 ... with no hole), whichever node stored
each publication. Clients are the SDK on both wire formats (JSON and
Protobuf); the API client is ``cent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import cent
import pytest

from tests.fleet.conftest import API_KEY, sdk
from tests.fleet.processes import Fleet
from tests.integration.clients import SubEvents, subscribed, value

COUNT = 60


@contextlib.asynccontextmanager
async def subscribers_on_every_node(
    group: Fleet, channel: str
) -> AsyncIterator[list[tuple[str, SubEvents]]]:
    """One JSON and one Protobuf SDK subscriber on each node: (label, recorder) pairs."""
    clients = []
    out: list[tuple[str, SubEvents]] = []
    try:
        for node in group:
            for protobuf in (False, True):
                label = f"{node.name}/{'protobuf' if protobuf else 'json'}"
                client = sdk(node, label, protobuf=protobuf)
                clients.append(client)
                await client.connect()
                _, events = await subscribed(client, channel)
                out.append((label, events))
        yield out
    finally:
        for client in clients:
            await client.disconnect()


@contextlib.asynccontextmanager
async def apis(group: Fleet) -> AsyncIterator[list[cent.AsyncClient]]:
    """A ``cent`` client for each node's server API."""
    clients = [cent.AsyncClient(node.api_url, API_KEY) for node in group]
    try:
        yield clients
    finally:
        for api in clients:
            await api.close()


async def received(label: str, events: SubEvents, count: int) -> list[Any]:
    """``count`` publications of one subscriber (fails naming it if they do not come)."""
    pubs = []
    for i in range(count):
        try:
            pubs.append(await events.next("pub"))
        except pytest.fail.Exception as exc:
            got = [(value(p.data), p.offset) for p in pubs]
            raise AssertionError(f"{label} got only {i} of {count}: {got}") from exc
    return pubs


async def test_round_robin_publications_reach_every_node_in_order(fleet3: Fleet) -> None:
    channel = f"feed:rr-{uuid.uuid4().hex[:8]}"
    async with subscribers_on_every_node(fleet3, channel) as subscribers, apis(fleet3) as api:
        positions = []
        for n in range(COUNT):
            result = await api[n % len(api)].publish(
                cent.PublishRequest(channel=channel, data={"n": n})
            )
            positions.append((result.offset, result.epoch))

        # The API replies already show one stream, whichever node was asked.
        assert [offset for offset, _ in positions] == list(range(1, COUNT + 1))
        assert len({epoch for _, epoch in positions}) == 1

        for label, events in subscribers:
            pubs = await received(label, events, COUNT)
            assert [value(p.data)["n"] for p in pubs] == list(range(COUNT)), label
            assert [p.offset for p in pubs] == list(range(1, COUNT + 1)), label
        for label, events in subscribers:
            assert events.events.pending("pub") == [], f"{label} got more than was published"


async def test_concurrent_publishers_on_three_nodes_give_everyone_one_order(
    fleet3: Fleet,
) -> None:
    # Three publishers, one per node, at once: the fleet must still deliver a
    # single order (the stream's), the same for every subscriber on every node.
    channel = f"feed:cc-{uuid.uuid4().hex[:8]}"
    per_publisher = COUNT // 3
    async with subscribers_on_every_node(fleet3, channel) as subscribers, apis(fleet3) as api:

        async def publish_all(p: int) -> list[int]:
            offsets = []
            for i in range(per_publisher):
                request = cent.PublishRequest(channel=channel, data={"p": p, "i": i})
                offsets.append((await api[p].publish(request)).offset)
            return offsets

        by_publisher = await asyncio.gather(*(publish_all(p) for p in range(len(api))))
        assert sorted(o for offsets in by_publisher for o in offsets) == list(range(1, COUNT + 1))

        sequences = []
        for label, events in subscribers:
            pubs = await received(label, events, COUNT)
            assert [p.offset for p in pubs] == list(range(1, COUNT + 1)), label
            sequence = [(value(p.data)["p"], value(p.data)["i"]) for p in pubs]
            # Each publisher's own publications keep the order it made them in...
            for p in range(len(api)):
                assert [i for q, i in sequence if q == p] == list(range(per_publisher)), label
            sequences.append(sequence)
        # ...and every subscriber saw the same interleaving.
        assert all(s == sequences[0] for s in sequences)
        # The offset each publisher was told is where its publication sits.
        for p, offsets in enumerate(by_publisher):
            assert [sequences[0][o - 1] for o in offsets] == [(p, i) for i in range(per_publisher)]
