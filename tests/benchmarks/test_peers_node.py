"""The Node peers (socket.io, ws) and the picows ceiling follow the peer contract.

Each peer runs as the load generator runs it: its own process on free ports,
readiness known from ``POST /publish []``. A client speaking the contract by
hand (aiohttp's WebSocket client) subscribes to two channels; messages
published over one keep-alive HTTP connection must each arrive exactly once,
in order per channel. A failed ``npm ci`` fails these tests; nothing skips.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.peers.node_env import node_peer_specs, picows_raw_spec
from benchmarks.peers.spec import PeerSpec
from lab.redis import RedisServer, redis_server
from tests.benchmarks.peer_clients import (
    ROOT,
    Client,
    check_bad_publish_is_400,
    check_delivery,
    client,
    publisher,
    running,
)

CHANNELS = ("alpha", "beta")


@pytest.fixture(scope="module")
def specs() -> dict[str, PeerSpec]:
    # node_peer_specs runs npm ci when needed and raises (with npm's output) if it fails.
    return {**node_peer_specs(ROOT), "picows-raw": picows_raw_spec(ROOT)}


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


# -- what only the Node peers need ------------------------------------------------------------


def as_double(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``t`` as a double: Node parses JSON numbers into doubles, so a
    nanosecond timestamp (above 2**53) comes back rounded to a multiple of 256."""
    return {**data, "t": float(data["t"])}


async def barrier(sub: Client, publish_port: int) -> None:
    """Until a publish on another node reaches ``sub`` (the Redis subscriptions are up)."""
    async with publisher(publish_port) as pub:
        for n in range(100):
            await pub.post([{"channel": CHANNELS[0], "data": {"probe": n}}])
            try:
                await sub.message(timeout=0.1)
                return
            except TimeoutError:
                continue
    pytest.fail("no publish crossed from node B to node A through Redis")


def is_probe(data: Any) -> bool:
    """One of :func:`barrier`'s probes: those posted before the first crossed may still arrive."""
    return "probe" in data


@pytest.mark.parametrize("name", ["node-socket.io", "node-ws", "picows-raw"])
async def test_every_message_arrives_once_in_order(specs: dict[str, PeerSpec], name: str) -> None:
    spec = specs[name]
    async with running(spec) as peer, client(spec, peer.port) as sub:
        await sub.subscribe(CHANNELS)
        await check_delivery(sub, peer.publish_port, CHANNELS, ignore=is_probe, normalize=as_double)


@pytest.mark.parametrize("name", ["node-socket.io", "node-ws", "picows-raw"])
async def test_bad_publish_body_is_400(specs: dict[str, PeerSpec], name: str) -> None:
    async with running(specs[name]) as peer:
        await check_bad_publish_is_400(peer.publish_port)


@pytest.mark.redis
async def test_socketio_two_nodes_share_broadcasts(
    specs: dict[str, PeerSpec], redis: RedisServer
) -> None:
    spec = specs["node-socket.io"]
    assert spec.two_node
    async with (
        running(spec, redis.url) as node_a,
        running(spec, redis.url) as node_b,
        client(spec, node_a.port) as sub,
    ):
        await sub.subscribe(CHANNELS)
        await barrier(sub, node_b.publish_port)
        await check_delivery(
            sub, node_b.publish_port, CHANNELS, ignore=is_probe, normalize=as_double
        )


@pytest.mark.parametrize("name", ["node-ws", "picows-raw"])
def test_single_node_peers_refuse_redis(specs: dict[str, PeerSpec], name: str) -> None:
    spec = specs[name]
    assert not spec.two_node
    argv = [*spec.command, "--host", "127.0.0.1", "--port", "1", "--redis", "redis://127.0.0.1:1/0"]
    if spec.publish_port:
        argv += ["--publish-port", "2"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--redis" in done.stderr
