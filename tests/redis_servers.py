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
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest
from redis.crc import key_slot

from lab.ports import free_port, node_port
from lab.redis import RedisServer, ensure_redis_server, redis_server, wait_ping
from lab.redis import redis_cli as _cli
from wsfleet.brokers.base import Broker, PublishOptions
from wsfleet.protocol.messages import ClientInfo, Publication, StreamPosition, raw

__all__ = [
    "ClusterNodeView",
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
    """Three masters, slots split evenly; with replicas, one replica per master.

    ``servers`` holds every node, masters and replicas, in creation order; the
    roles change when a replica takes over, so the helpers below ask the nodes.
    The helpers block (they run ``redis-cli``): from a coroutine, call the slow
    ones (``wait_*``) through ``asyncio.to_thread``.
    """

    servers: list[RedisServer]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    @property
    def running(self) -> list[RedisServer]:
        return [s for s in self.servers if s.running]

    def server(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def nodes(self, seen_by: RedisServer) -> list[ClusterNodeView]:
        """The cluster as ``seen_by`` sees it (``CLUSTER NODES``)."""
        return [_parse_node(line) for line in seen_by.cli("cluster", "nodes").splitlines() if line]

    def master_of(self, key: str) -> RedisServer:
        """The live master serving ``key``'s slot; every running node must agree."""
        owner = self._agreed_owner(key_slot(key.encode()))
        if owner is None:
            raise RuntimeError(f"the running nodes do not agree on who serves {key!r}")
        return self.server(owner)

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        """The running replicas of ``master``, as ``master`` sees them."""
        views = self.nodes(master)
        me = next(n for n in views if "myself" in n.flags)
        return [self.server(n.port) for n in views if n.master_id == me.id and n.port in self._up]

    def is_master(self, server: RedisServer) -> bool:
        """Whether ``server`` itself says it is a master (the moment it takes writes)."""
        return server.cli("role").split("\n", 1)[0].strip() == "master"

    def state_ok(self) -> bool:
        return all("cluster_state:ok" in s.cli("cluster", "info") for s in self.running)

    def wait_replicated(self, *, within: float = 30.0) -> None:
        """Until every replica has applied all its master had written when this was called."""
        targets = {
            replica.port: _info_int(master, "master_repl_offset")
            for master in self.running
            if self.is_master(master)
            for replica in self.replicas_of(master)
        }
        _wait(
            lambda: all(
                _info_int(self.server(port), "slave_repl_offset") >= offset
                for port, offset in targets.items()
            ),
            "the replicas did not catch up with their masters",
            within,
        )

    def wait_taken_over(self, dead: RedisServer, key: str, *, within: float = 30.0) -> RedisServer:
        """Until a former replica of ``dead`` serves ``key`` for every node; that replica.

        Also waits for ``cluster_state:ok`` everywhere: the cluster takes writes again.
        """
        slot = key_slot(key.encode())
        _wait(
            lambda: self._agreed_owner(slot) not in (None, dead.port) and self.state_ok(),
            f"no replica took over from the master on port {dead.port}",
            within,
        )
        return self.master_of(key)

    @property
    def _up(self) -> set[int]:
        return {s.port for s in self.running}

    def _agreed_owner(self, slot: int) -> int | None:
        """The port serving ``slot`` if every running node names the same one."""
        owners = {self._owner(s, slot) for s in self.running}
        return owners.pop() if len(owners) == 1 else None

    def _owner(self, seen_by: RedisServer, slot: int) -> int | None:
        """The port of the master ``seen_by`` sends ``slot`` to; None if it knows none."""
        for node in self.nodes(seen_by):
            if "master" in node.flags and any(a <= slot <= b for a, b in node.slots):
                return node.port
        return None


class ClusterNodeView(NamedTuple):
    """One line of ``CLUSTER NODES``: one node as another node sees it."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str  # "-" for a master
    slots: tuple[tuple[int, int], ...]


def _parse_node(line: str) -> ClusterNodeView:
    # <id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slot>...
    fields = line.split()
    port = int(fields[1].split("@", 1)[0].rsplit(":", 1)[1])
    slots = []
    for text in fields[8:]:
        if text.startswith("["):  # a slot being migrated or imported
            continue
        first, _, last = text.partition("-")
        slots.append((int(first), int(last or first)))
    return ClusterNodeView(
        fields[0], port, frozenset(fields[2].split(",")), fields[3], tuple(slots)
    )


def _info_int(server: RedisServer, field: str) -> int:
    for line in server.cli("info", "replication").splitlines():
        name, _, value = line.strip().partition(":")
        if name == field:
            return int(value)
    raise RuntimeError(f"no {field} in INFO replication of port {server.port}")


def _wait(condition: Callable[[], bool], failure: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{failure} within {within} s")
        time.sleep(0.05)


@contextmanager
def redis_cluster(
    *, replicas: int = 0, node_timeout_ms: int = 2000, full_coverage: bool = True
) -> Iterator[RedisCluster]:
    """Three masters with ``replicas`` replicas each (0 or 1), started and in sync.

    node_timeout_ms: ``cluster-node-timeout``; a replica takes over a dead master
    a little after it (failure detection, then an election).
    full_coverage: ``cluster-require-full-coverage``; when true (Redis's default)
    every node refuses every command (CLUSTERDOWN) while a failed master's slots
    have no master, until a replica takes over.
    """
    if replicas not in (0, 1):
        raise ValueError("replicas must be 0 or 1")
    with tempfile.TemporaryDirectory(prefix="wsfleet-cluster-") as tmp:
        servers: list[RedisServer] = []
        try:
            for i in range(3 * (1 + replicas)):
                workdir = Path(tmp) / str(i)
                workdir.mkdir()
                server = RedisServer(
                    free_port(cluster_bus=True),
                    workdir,
                    ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", str(node_timeout_ms),
                     # A replica's first sync starts at once, not after the
                     # default 5 s wait for more replicas.
                     "--repl-diskless-sync-delay", "0",
                     "--cluster-require-full-coverage", "yes" if full_coverage else "no"],
                )  # fmt: skip
                server.start()
                servers.append(server)
            cli = shutil.which("redis-cli") or "redis-cli"
            subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in servers),
                 "--cluster-replicas", str(replicas), "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
            )  # fmt: skip
            cluster = RedisCluster(servers)
            _wait(cluster.state_ok, "the test Redis Cluster did not reach cluster_state:ok", 30)
            if replicas:
                _wait(
                    lambda: _replicas_known(cluster, replicas),
                    "not every node learnt every replica",
                    30,
                )
                _wait(
                    lambda: all(
                        "master_link_status:up" in s.cli("info", "replication")
                        for s in servers
                        if not cluster.is_master(s)
                    ),
                    "the replicas did not finish their first sync",
                    30,
                )
            yield cluster
        finally:
            for server in servers:
                server.kill()


def _replicas_known(cluster: RedisCluster, replicas: int) -> bool:
    # An election needs the voting masters to know the replica and its
    # master; gossip spreads that a little after CLUSTER REPLICATE.
    for server in cluster.servers:
        views = cluster.nodes(server)
        masters = {n.id for n in views if "master" in n.flags and n.slots}
        followers = Counter(n.master_id for n in views if "slave" in n.flags)
        if len(masters) != 3 or any(followers[m] != replicas for m in masters):
            return False
    return True


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
