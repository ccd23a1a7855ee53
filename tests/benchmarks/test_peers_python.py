"""The Python framework peers (python-socketio, Django Channels, broadcaster) follow the contract.

Each peer runs as the load generator runs it: its own process, started by the
peers' own virtualenv (installed here if missing; a failed install fails the
tests, naming pip's error), on a free port, ready once ``POST /publish []``
answers. A client speaking the contract by hand (aiohttp's WebSocket client)
subscribes to two channels; messages published over one keep-alive HTTP
connection must each arrive exactly once, in order per channel. In two-node
mode the subscriber is on node A and the messages are published on node B,
through a private redis-server.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path

import pytest

from benchmarks.peers.python_env import (
    PYTHON_PEERS,
    PeerInstallError,
    ensure_python_peers,
    python_peer_specs,
)
from benchmarks.peers.spec import PeerSpec
from lab.redis import RedisServer, redis_server
from tests.benchmarks.peer_clients import (
    ROOT,
    Client,
    Peer,
    check_bad_publish_is_400,
    check_delivery,
    publisher,
)
from tests.benchmarks.peer_clients import client as peer_client
from tests.benchmarks.peer_clients import running as run_peer

PEERS = sorted(PYTHON_PEERS)
CHANNELS = ("bench.1", "fan")
FAN_CLIENTS = 20
FAN_MESSAGES = 5
START_TIMEOUT = 30.0

# The first test to use the ``specs`` fixture may build the peers' virtualenv
# (about 15 s with a warm network, pip's own timeouts apply otherwise); every
# wait inside the tests has its own short timeout.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def specs() -> dict[str, PeerSpec]:
    try:
        python = ensure_python_peers(ROOT)
    except PeerInstallError as exc:
        pytest.fail(f"installing the Python peers failed: {exc}")
    return python_peer_specs(ROOT, python)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def test_install_is_idempotent(specs: dict[str, PeerSpec]) -> None:
    started = time.monotonic()
    python = ensure_python_peers(ROOT)  # the stamp matches: nothing to do
    assert time.monotonic() - started < 1.0
    assert python == ROOT / ".venv" / "bench-peers" / "bin" / "python"
    assert all(spec.command[0] == str(python) for spec in specs.values())
    assert {spec.name: spec.protocol for spec in specs.values()} == {
        "python-socketio": "socketio",
        "django-channels": "simple",
        "broadcaster": "simple",
    }


def test_failed_install_names_pip_error_and_is_retried(tmp_path: Path) -> None:
    requirements = tmp_path / "benchmarks" / "peers" / "requirements.txt"
    requirements.parent.mkdir(parents=True)
    requirements.write_text("/nonexistent/wsfleet-peer-missing.tar.gz\n")  # fails with no download
    with pytest.raises(PeerInstallError, match="pip install") as failed:
        ensure_python_peers(tmp_path)
    assert "wsfleet-peer-missing.tar.gz" in str(failed.value)
    stamp = tmp_path / ".venv" / "bench-peers" / ".requirements.sha256"
    assert not stamp.exists()
    requirements.write_text("# nothing to install\n")  # edited: rebuilt and installed
    python = ensure_python_peers(tmp_path)
    assert python.exists()
    assert stamp.read_text().strip() == hashlib.sha256(requirements.read_bytes()).hexdigest()


# -- the Python peers' allowances -------------------------------------------------------------


def running(spec: PeerSpec, redis_url: str | None = None) -> AbstractAsyncContextManager[Peer]:
    """:func:`run_peer` with START_TIMEOUT to start, and SIGTERM's death as a clean stop
    (uvicorn shuts down gracefully, then raises the signal it caught again)."""
    return run_peer(spec, redis_url, start_timeout=START_TIMEOUT, sigterm_exit_ok=True)


def client(spec: PeerSpec, port: int) -> AbstractAsyncContextManager[Client]:
    """:func:`peer_client` sending frames the peer must ignore before subscribing, and
    taking the subscription replies in any order (broadcaster subscribes each channel
    in its own task: replies may interleave)."""
    return peer_client(spec, port, send_unknown=True, replies_in_order=False)


@pytest.mark.parametrize("name", PEERS)
async def test_every_message_arrives_once_in_order(specs: dict[str, PeerSpec], name: str) -> None:
    spec = specs[name]
    async with running(spec) as peer, client(spec, peer.port) as sub:
        await sub.subscribe(CHANNELS)
        await check_delivery(sub, peer.port, CHANNELS)


@pytest.mark.parametrize("name", PEERS)
async def test_bad_publish_body_is_400(specs: dict[str, PeerSpec], name: str) -> None:
    async with running(specs[name]) as peer:
        await check_bad_publish_is_400(peer.port)


@pytest.mark.redis
@pytest.mark.parametrize("name", PEERS)
async def test_two_nodes_share_broadcasts(
    specs: dict[str, PeerSpec], redis: RedisServer, name: str
) -> None:
    spec = specs[name]
    assert spec.two_node
    async with (
        running(spec, redis.url) as node_a,
        running(spec, redis.url) as node_b,
        client(spec, node_a.port) as sub,
    ):
        # No barrier: once a subscription is acknowledged, a publish on another
        # node must reach it (the load generator relies on that).
        await sub.subscribe(CHANNELS)
        await check_delivery(sub, node_b.port, CHANNELS)


async def check_fan_out(ports: list[int], publish_port: int, spec: PeerSpec) -> None:
    """FAN_CLIENTS clients (spread over ``ports``) subscribe to one channel at once; all get all."""
    async with AsyncExitStack() as stack:
        subs = [
            await stack.enter_async_context(client(spec, ports[i % len(ports)]))
            for i in range(FAN_CLIENTS)
        ]
        # Concurrent first subscriptions to one channel are where broadcaster
        # 0.3.1 loses subscribers (see benchmarks/peers/broadcaster_peer.py).
        await asyncio.gather(*(sub.subscribe(("fan",)) for sub in subs))
        sent = [{"s": i, "c": "fan"} for i in range(FAN_MESSAGES)]
        async with publisher(publish_port) as pub:
            batch = [{"channel": "fan", "data": data} for data in sent]
            assert await pub.post(batch) == (200, {"published": FAN_MESSAGES})
        for n, sub in enumerate(subs):
            received = [await sub.message(timeout=10) for _ in sent]
            assert received == sent, f"client {n}"


@pytest.mark.parametrize("name", PEERS)
async def test_fan_out_to_concurrent_subscribers(specs: dict[str, PeerSpec], name: str) -> None:
    async with running(specs[name]) as peer:
        await check_fan_out([peer.port], peer.port, specs[name])


@pytest.mark.redis
@pytest.mark.parametrize("name", PEERS)
async def test_two_node_fan_out(specs: dict[str, PeerSpec], redis: RedisServer, name: str) -> None:
    spec = specs[name]
    async with running(spec, redis.url) as node_a, running(spec, redis.url) as node_b:
        await check_fan_out([node_a.port, node_b.port], node_b.port, spec)


@pytest.mark.slow
async def test_publisher_connection_survives_idle_and_large_batch(
    specs: dict[str, PeerSpec],
) -> None:
    """One publisher connection, idle longer than uvicorn's default keep-alive (5 s),
    then a batch larger than aiohttp's (1 MiB) and Django's (2.5 MB) default body limits."""
    batch = [{"channel": "nobody", "data": {"p": "x" * 1000}} for _ in range(3000)]
    async with AsyncExitStack() as stack:
        peers = [await stack.enter_async_context(running(specs[name])) for name in PEERS]
        pubs = [await stack.enter_async_context(publisher(peer.port)) for peer in peers]
        for pub in pubs:
            assert await pub.post([]) == (200, {"published": 0})
        await asyncio.sleep(6)
        for name, pub in zip(PEERS, pubs, strict=True):
            assert await pub.post(batch) == (200, {"published": len(batch)}), name
