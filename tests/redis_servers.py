"""Private Redis servers for tests: one server, a three-master Cluster, Sentinel.

Every server here is a ``redis-server`` child process on a free loopback port,
with no persistence, in its own temporary directory, so tests may SIGKILL and
restart it. The shared Redis on 127.0.0.1:6379 is never touched. The single
server and the free ports live in :mod:`lab.redis` and :mod:`lab.ports` (the
fleet lab uses them too) and are re-exported here; Cluster and Sentinel are
only for tests.

When ``redis-server`` is missing it is installed with apt (the test images run
as root); if that fails the fixture fails naming the package. It never skips.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest

from lab.ports import free_port, node_port
from lab.redis import RedisServer, ensure_redis_server, redis_server, wait_ping
from lab.redis import redis_cli as _cli
from wsfleet.brokers.base import Broker, PublishOptions
from wsfleet.protocol.messages import ClientInfo, Publication, StreamPosition, raw

__all__ = [
    "EventLog",
    "RedisCluster",
    "RedisSentinel",
    "RedisServer",
    "ensure_redis_server",
    "free_port",
    "node_port",
    "redis_cluster",
    "redis_sentinel",
    "redis_server",
    "session_redis",
    "session_redis_cluster",
]


@dataclass
class RedisCluster:
    """Three masters, no replicas, slots split evenly."""

    servers: list[RedisServer]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers)


@contextmanager
def redis_cluster() -> Iterator[RedisCluster]:
    with tempfile.TemporaryDirectory(prefix="wsfleet-cluster-") as tmp:
        servers: list[RedisServer] = []
        try:
            for i in range(3):
                workdir = Path(tmp) / str(i)
                workdir.mkdir()
                server = RedisServer(
                    free_port(cluster_bus=True),
                    workdir,
                    ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", "2000"],
                )  # fmt: skip
                server.start()
                servers.append(server)
            cli = shutil.which("redis-cli") or "redis-cli"
            subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in servers),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
            )  # fmt: skip
            deadline = time.monotonic() + 30
            while not all("cluster_state:ok" in s.cli("cluster", "info") for s in servers):
                if time.monotonic() > deadline:
                    raise RuntimeError("the test Redis Cluster did not reach cluster_state:ok")
                time.sleep(0.05)
            yield RedisCluster(servers)
        finally:
            for server in servers:
                server.kill()


@dataclass
class RedisSentinel:
    """A master watched by one Sentinel process (``redis-server --sentinel``)."""

    master: RedisServer
    sentinel: subprocess.Popen[bytes]
    sentinel_port: int
    service: str = "wsfleet-master"

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.service}?db=0"


@contextmanager
def redis_sentinel() -> Iterator[RedisSentinel]:
    """One master and one Sentinel; the same binary runs both (``--sentinel``)."""
    with redis_server() as master, tempfile.TemporaryDirectory(prefix="wsfleet-sent-") as tmp:
        port = free_port()
        conf = Path(tmp) / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {tmp}\n"
            f"sentinel monitor wsfleet-master 127.0.0.1 {master.port} 1\n"
            "sentinel down-after-milliseconds wsfleet-master 2000\n"
        )
        proc = subprocess.Popen(
            [ensure_redis_server(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp,
        )
        try:
            wait_ping(port)
            deadline = time.monotonic() + 10
            while str(master.port) not in _cli(
                port, "sentinel", "get-master-addr-by-name", "wsfleet-master"
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("sentinel did not learn the master")
                time.sleep(0.05)
            yield RedisSentinel(master, proc, port)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


# -- what a node hears ------------------------------------------------------------


class Heard(NamedTuple):
    kind: str
    channel: str
    pub: Publication | None
    position: StreamPosition | None
    info: ClientInfo | None


class EventLog:
    """A broker event handler for the Redis-specific tests: events in a queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Heard] = asyncio.Queue()

    def on_publication(
        self, channel: str, pub: Publication, position: StreamPosition, prev: Publication | None
    ) -> None:
        self.queue.put_nowait(Heard("publication", channel, pub, position, None))

    def on_join(self, channel: str, info: ClientInfo) -> None:
        self.queue.put_nowait(Heard("join", channel, None, None, info))

    def on_leave(self, channel: str, info: ClientInfo) -> None:
        self.queue.put_nowait(Heard("leave", channel, None, None, info))

    async def next(self, *, within: float = 10.0) -> Heard:
        """The next event; fails after ``within`` seconds (not a performance bound)."""
        async with asyncio.timeout(within):
            return await self.queue.get()

    async def take(self, count: int, *, within: float = 10.0) -> list[Heard]:
        return [await self.next(within=within) for _ in range(count)]

    async def barrier(self, broker: Broker, channel: str) -> list[Heard]:
        """Events before a marker published now on ``channel`` (this node subscribed)."""
        marker = raw(b'"barrier-%d"' % random.getrandbits(64))
        await broker.publish(channel, Publication(data=marker), PublishOptions())
        before: list[Heard] = []
        while True:
            event = await self.next()
            if event.pub is not None and event.pub.data == marker:
                return before
            before.append(event)


# -- pytest fixtures (imported by the conftest files that use them) ---------------


@pytest.fixture(scope="session")
def session_redis() -> Iterator[RedisServer]:
    """One private server shared by a whole test session (tests use unique channels)."""
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def session_redis_cluster() -> Iterator[RedisCluster]:
    """One private three-master Cluster shared by a whole test session."""
    with redis_cluster() as cluster:
        yield cluster
