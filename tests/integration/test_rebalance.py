"""Rebalancing between real nodes on one Redis: the crowded node sheds down to the mean.

Two nodes in this process share a private ``redis-server``; all the clients
first land on one of them, as they do on old pods after a scale-up. The
clients are raw WebSockets; the test plays the load balancer and reconnects
each shed client to the other node. The crowded node closes with 3011
"rebalance", no faster than ``rebalance.rate``, refuses handshakes with 503
while it sheds, stops at the fleet mean and sheds nothing more once the
fleet is even. A node that is off
(``rebalance.mode: off``) or alone never sheds.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.integration.clients import eventually
from tests.integration.raw import closed_at, connected
from tests.node_harness import RunningNode, running_node
from tests.redis_servers import RedisServer, redis_server

pytestmark = pytest.mark.redis

CLIENTS = 20
RATE = 10.0


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@contextlib.asynccontextmanager
async def await_connected(node: RunningNode) -> AsyncIterator[Any]:
    ws = await connected(node)
    try:
        yield ws
    finally:
        await ws.close()


@contextlib.asynccontextmanager
async def two_nodes(redis: RedisServer, **extra: Any) -> AsyncIterator[list[RunningNode]]:
    settings = {
        "broker.url": redis.url,
        "broker.key_prefix": f"rebalance-{uuid.uuid4().hex[:8]}",
        "auth.allow_anonymous_connect_without_token": True,
        "fleet.heartbeat_interval": 0.5,
        "rebalance.interval": 0.5,
        "rebalance.rate": RATE,
        "rebalance.tolerance": 0.1,
        **extra,
    }
    async with running_node(settings) as a, running_node(settings) as b:
        yield [a, b]


async def test_the_crowded_node_sheds_down_to_the_mean_at_the_rate(redis: RedisServer) -> None:
    async with two_nodes(redis) as (crowded, other), contextlib.AsyncExitStack() as stack:
        moved: list[Any] = []

        async def client() -> tuple[float, int | None, str] | None:
            ws = await stack.enter_async_context(await_connected(crowded))
            closed = await closed_at(ws)
            moved.append(await stack.enter_async_context(await_connected(other)))
            return closed

        tasks = [asyncio.create_task(client()) for _ in range(CLIENTS)]
        await eventually(lambda: len(moved) >= 1, within=20)
        # While it sheds, the crowded node sends newcomers elsewhere.
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(crowded.ws_url, proxy=None)
        assert refused.value.response.status_code == 503
        assert b"rebalancing" in refused.value.response.body
        await eventually(lambda: len(moved) >= CLIENTS // 2, within=20)
        await asyncio.sleep(3.0)  # several more decisions: the fleet is even, nothing moves
        shed = [t.result() for t in tasks if t.done()]
        for t in tasks:
            t.cancel()

    assert {(code, reason) for _, code, reason in shed} == {(3011, "rebalance")}
    assert len(shed) == CLIENTS // 2, "shed to the mean of 20 and 0, and no further"
    assert crowded.node.stats.rebalanced == CLIENTS // 2
    assert other.node.stats.rebalanced == 0
    assert crowded.node.stats.handshakes_refused["rebalancing"] >= 1
    times = sorted(t for t, _, _ in shed)
    # No faster than rebalance.rate: a lower bound, which a slow machine only widens.
    assert times[-1] - times[0] >= (len(times) - 1) / RATE * 0.9


@pytest.mark.parametrize("mode", ["off"])
async def test_a_node_with_rebalancing_off_keeps_its_connections(
    redis: RedisServer, mode: str
) -> None:
    async with two_nodes(redis, **{"rebalance.mode": mode}) as (crowded, _):
        assert crowded.node.rebalancer is None
        sockets = [await connected(crowded) for _ in range(6)]
        await asyncio.sleep(2.0)  # four intervals
        assert len(crowded.node.registry) == 6
        for ws in sockets:
            await ws.close()


async def test_rebalancing_is_off_by_default_with_the_memory_broker() -> None:
    async with running_node({"dev": True}) as node:
        assert node.node.rebalancer is None
    async with running_node({"dev": True, "rebalance.mode": "on"}) as node:
        assert node.node.rebalancer is not None


async def test_a_node_alone_never_sheds(redis: RedisServer) -> None:
    settings = {
        "broker.url": redis.url,
        "broker.key_prefix": f"alone-{uuid.uuid4().hex[:8]}",
        "auth.allow_anonymous_connect_without_token": True,
        "fleet.heartbeat_interval": 0.5,
        "rebalance.interval": 0.5,
        "rebalance.tolerance": 0.0,
    }
    async with running_node(settings) as node:
        sockets = [await connected(node) for _ in range(5)]
        await asyncio.sleep(1.5)
        assert len(node.node.registry) == 5
        assert node.node.stats.rebalanced == 0
        for ws in sockets:
            await ws.close()
