"""The fleet-wide per-user connection limit (core.user_limit) on the memory fleet state."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from wsfleet.brokers.base import BrokerError, NodeInfo
from wsfleet.brokers.memory_fleet import MemoryFleet
from wsfleet.core.stats import NodeStats
from wsfleet.core.user_limit import UserConnections
from wsfleet.protocol.codes import ErrorCode, ProtocolDisconnect, ProtocolError


class Node:
    """One node's view: its established connections per user and its limiter."""

    def __init__(self, fleet: MemoryFleet, uid: str, limit: int) -> None:
        self.uid = uid
        self.connected: Counter[str] = Counter()
        self.stats = NodeStats()
        self.users = UserConnections(
            fleet, uid, limit=limit, user_count=lambda u: self.connected[u], stats=self.stats
        )

    async def connect(self, user: str) -> None:
        await self.users.admit(user)
        self.connected[user] += 1  # registered right after, as the session does

    async def disconnect(self, user: str) -> None:
        self.connected[user] -= 1
        self.users.changed(user)
        await self.users.flush()


async def fleet_of(*uids: str, limit: int) -> list[Node]:
    first = MemoryFleet()
    nodes = []
    for uid in uids:
        state = first if not nodes else MemoryFleet()
        if nodes:
            state.join(first)
        await state.heartbeat(NodeInfo(uid=uid, name=uid), ttl=60)
        nodes.append(Node(state, uid, limit))
    return nodes


async def test_the_limit_counts_connections_on_every_node() -> None:
    a, b = await fleet_of("a", "b", limit=3)
    await a.connect("ann")
    await b.connect("ann")
    await b.connect("ann")
    with pytest.raises(ProtocolDisconnect) as refused:
        await a.connect("ann")
    assert refused.value.disconnect.code == 3504
    assert a.stats.limit_hits["user_connections"] == 1
    await a.connect("bob")  # other users are not affected
    await b.disconnect("ann")
    await a.connect("ann")  # a slot freed on b is usable on a


class SlowFleet(MemoryFleet):
    """Answers a claim only after other tasks ran, as a network round trip does."""

    async def claim_user_connection(self, uid: str, user: str, *, count: int, limit: int) -> bool:
        await asyncio.sleep(0)
        return await super().claim_user_connection(uid, user, count=count, limit=limit)


async def test_concurrent_connects_of_one_user_on_one_node_respect_the_limit() -> None:
    a = Node(SlowFleet(), "a", 2)
    results = await asyncio.gather(*(a.connect("ann") for _ in range(5)), return_exceptions=True)
    admitted = [r for r in results if r is None]
    assert len(admitted) == 2
    assert all(isinstance(r, ProtocolDisconnect) for r in results if r is not None)


async def test_anonymous_and_unlimited_connections_are_not_counted() -> None:
    (a,) = await fleet_of("a", limit=1)
    for _ in range(3):
        await a.connect("")
    (unlimited,) = await fleet_of("u", limit=0)
    for _ in range(3):
        await unlimited.connect("ann")


class FailingFleet(MemoryFleet):
    def __init__(self) -> None:
        super().__init__()
        self.failing = True
        self.writes: list[dict[str, int]] = []

    async def claim_user_connection(self, uid: str, user: str, *, count: int, limit: int) -> bool:
        if self.failing:
            raise BrokerError("redis unreachable")
        return await super().claim_user_connection(uid, user, count=count, limit=limit)

    async def set_user_connections(self, uid: str, counts: dict[str, int]) -> None:
        if self.failing:
            raise BrokerError("redis unreachable")
        self.writes.append(dict(counts))
        await super().set_user_connections(uid, counts)


async def test_an_unreachable_fleet_state_is_a_temporary_error_and_counts_are_rewritten() -> None:
    fleet = FailingFleet()
    node = Node(fleet, "a", 2)
    with pytest.raises(ProtocolError) as error:
        await node.connect("ann")
    assert error.value.code is ErrorCode.INTERNAL and error.value.temporary
    fleet.failing = False
    await node.connect("ann")
    await node.connect("ann")
    fleet.failing = True
    await node.disconnect("ann")  # the write fails and is kept
    fleet.failing = False
    await node.users.flush()  # the next heartbeat writes the absolute count
    assert fleet.writes[-1] == {"ann": 1}


async def test_stop_writes_nothing_more() -> None:
    fleet = FailingFleet()
    fleet.failing = False
    node = Node(fleet, "a", 2)
    await node.connect("ann")
    await node.users.stop()
    node.connected["ann"] -= 1
    node.users.changed("ann")
    await node.users.flush()
    assert fleet.writes == []
