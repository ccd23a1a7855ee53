"""Private Redis servers for tests: one server, a three-master Cluster, Sentinel.

Every server here is a ``redis-server`` child process on a free loopback port,
with no persistence, in its own temporary directory, so tests may SIGKILL and
restart it. The shared Redis on 127.0.0.1:6379 is never touched.

When ``redis-server`` is missing it is installed with apt (the test images run
as root); if that fails the fixture fails naming the package. It never skips.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pytest

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


def ensure_redis_server() -> str:
    """Path of ``redis-server``, installing the Debian package if it is missing."""
    path = shutil.which("redis-server")
    if path:
        return path
    try:
        subprocess.run(
            ["apt-get", "install", "-y", "redis-server"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=300,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(
            "redis-server is required: install the 'redis-server' package "
            f"(apt-get install -y redis-server); automatic install failed: {exc}"
        ) from exc
    path = shutil.which("redis-server")
    if not path:
        raise RuntimeError("redis-server is required: install the 'redis-server' package")
    return path


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(*, cluster_bus: bool = False) -> int:
    """A free loopback port; with ``cluster_bus`` also port + 10000 (Cluster's bus)."""
    if not cluster_bus:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            return port
    for _ in range(1000):
        port = random.randint(20000, 50000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


_handed_out: set[int] = set()


def node_port() -> int:
    """A free port never given to a node before in this test run.

    The OS may offer a port it just offered again (nothing was bound to it in
    between), so two nodes, or a node's two listeners, could get the same one.
    """
    while True:
        port = free_port()
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def _cli(port: int, *args: str) -> str:
    cli = shutil.which("redis-cli") or "redis-cli"
    result = subprocess.run(
        [cli, "-p", str(port), *args], capture_output=True, text=True, timeout=30, check=False
    )
    return result.stdout


def _wait_ping(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"redis-server on port {port} did not start")


@dataclass
class RedisServer:
    """One private ``redis-server`` process; ``kill()`` and ``start()`` may repeat."""

    port: int
    workdir: Path
    extra: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            ensure_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            *self.extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.workdir
        )
        try:
            _wait_ping(self.port)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL: the server dies at once and its data is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def cli(self, *args: str) -> str:
        return _cli(self.port, *args)


@contextmanager
def redis_server(*extra: str) -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="wsfleet-redis-") as tmp:
        server = RedisServer(free_port(), Path(tmp), list(extra))
        server.start()
        try:
            yield server
        finally:
            server.kill()


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
            _wait_ping(port)
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
