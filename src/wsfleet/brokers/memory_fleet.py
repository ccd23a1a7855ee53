"""The fleet state of the in-memory broker: a fleet of the nodes in one process.

With ``memory://`` a fleet is one node, so this is mostly bookkeeping; it
keeps the same rules as the Redis implementation (expiry of silent nodes,
dead nodes' user counts ignored, control messages delivered to the sender
too) so that the node code above it has one behaviour to rely on, and so
several nodes built in one process on one :class:`MemoryFleet` (tests) act
as a fleet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from wsfleet.brokers.base import FleetState, NodeInfo

__all__ = ["MemoryFleet"]


class MemoryFleet(FleetState):
    """Registry, per-user counts and control messages in process memory.

    clock: time source of the registry's expiry, in seconds (default
        :func:`time.time`).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # uid -> (info, expire_at)
        self._nodes: dict[str, tuple[NodeInfo, float]] = {}
        # user -> uid -> connections
        self._users: dict[str, dict[str, int]] = {}
        self._listeners: list[FleetState] = [self]

    def join(self, other: MemoryFleet) -> None:
        """Share ``other``'s state: the two act as nodes of one fleet (tests)."""
        self._nodes = other._nodes
        self._users = other._users
        self._listeners = other._listeners
        self._listeners.append(self)

    def detach(self) -> None:
        """Hear no more control messages (the broker closed)."""
        if self in self._listeners:
            self._listeners.remove(self)

    def _live(self, uid: str, now: float) -> bool:
        entry = self._nodes.get(uid)
        return entry is not None and entry[1] > now

    async def heartbeat(self, info: NodeInfo, *, ttl: float) -> bool:
        now = self._clock()
        was_live = self._live(info.uid, now)
        self._nodes[info.uid] = (info, now + ttl)
        return was_live

    async def leave(self, uid: str) -> None:
        self._nodes.pop(uid, None)
        for user in list(self._users):
            self._set(uid, user, 0)

    async def nodes(self) -> list[NodeInfo]:
        now = self._clock()
        # Entries of silent nodes are dropped here: nothing else sweeps them.
        for uid in [uid for uid, (_, expire) in self._nodes.items() if expire <= now]:
            del self._nodes[uid]
        return [info for info, _ in self._nodes.values()]

    async def claim_user_connection(self, uid: str, user: str, *, count: int, limit: int) -> bool:
        now = self._clock()
        counts = self._users.get(user, {})
        others = sum(n for node, n in counts.items() if node != uid and self._live(node, now))
        if others + count > limit:
            return False
        self._set(uid, user, count)
        return True

    async def set_user_connections(self, uid: str, counts: dict[str, int]) -> None:
        for user, count in counts.items():
            self._set(uid, user, count)

    def _set(self, uid: str, user: str, count: int) -> None:
        if count > 0:
            self._users.setdefault(user, {})[uid] = count
            return
        counts = self._users.get(user)
        if counts is not None:
            counts.pop(uid, None)
            if not counts:
                del self._users[user]

    async def publish_control(self, message: bytes) -> None:
        loop = asyncio.get_running_loop()
        for listener in self._listeners:
            # Later, as a backend would: never inside the sender's call.
            loop.call_soon(_deliver, listener, message)


def _deliver(listener: FleetState, message: bytes) -> None:
    callback = listener.on_control
    if callback is not None:
        callback(message)
