"""The per-user connection limit, counted across the whole fleet.

Each node stores, per user, how many connections the user holds on it (an
absolute count, never an increment): a write that fails during a broker
outage is simply written again later, and a count can never drift by a lost
decrement. Admitting a connection is one atomic check-and-set in the fleet
state: the counts of the other live nodes plus this node's new count must
stay within the limit. Counts of dead nodes do not count.

Anonymous connections (empty user) are never limited.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from wsfleet.brokers.base import BrokerError, FleetState
from wsfleet.core.stats import NodeStats
from wsfleet.protocol.codes import DisconnectCode, ErrorCode, ProtocolDisconnect, ProtocolError

log = logging.getLogger("wsfleet.user_limit")


class UserConnections:
    """Admits connections under ``limit`` per user and keeps the fleet counts true.

    user_count: this node's established connections of a user (the
        connection registry). limit: connections one user may hold in the
        whole fleet; 0 turns the limit, and every write it needs, off.
    """

    def __init__(
        self,
        fleet: FleetState,
        uid: str,
        *,
        limit: int,
        user_count: Callable[[str], int],
        stats: NodeStats,
    ) -> None:
        self._fleet = fleet
        self._uid = uid
        self.limit = limit
        self._user_count = user_count
        self._stats = stats
        # Connections between their claim and their registration.
        self._pending: Counter[str] = Counter()
        self._dirty: set[str] = set()
        self._flushing: asyncio.Task[None] | None = None
        self._stopped = False

    def _local(self, user: str) -> int:
        return self._user_count(user) + self._pending[user]

    async def admit(self, user: str) -> None:
        """Claim a connection for ``user`` or raise.

        Raises ProtocolDisconnect (3504 connection limit) when the user is at
        the limit, and a temporary ProtocolError when the fleet state cannot
        be reached (the client retries). The caller registers the connection
        right after this returns, with no await in between.
        """
        if not self.limit or not user:
            return
        self._pending[user] += 1
        try:
            admitted = await self._fleet.claim_user_connection(
                self._uid, user, count=self._local(user), limit=self.limit
            )
        except BrokerError as exc:
            raise ProtocolError(ErrorCode.INTERNAL, f"connection limit unavailable: {exc}") from exc
        finally:
            self._pending[user] -= 1
            if self._pending[user] <= 0:
                del self._pending[user]
        if not admitted:
            self._stats.limit_hits["user_connections"] += 1
            raise ProtocolDisconnect(
                DisconnectCode.CONNECTION_LIMIT, f"user {user!r} is at {self.limit} connections"
            )

    def changed(self, user: str) -> None:
        """``user``'s count on this node changed (a connection closed); write it soon."""
        if not self.limit or not user or self._stopped:
            return
        self._dirty.add(user)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self.flush())

    def rewrite_all(self, users: list[str]) -> None:
        """Write every user's count again (the fleet state lost or forgot them)."""
        if self.limit:
            self._dirty.update(users)

    async def stop(self) -> None:
        """Write nothing more; wait for a write under way (the node then leaves the fleet,
        which removes its counts; a write landing after that would linger)."""
        self._stopped = True
        self._dirty.clear()
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)

    async def flush(self) -> None:
        """Write the counts that changed; on failure keep them for the next try."""
        while self._dirty:
            users, self._dirty = self._dirty, set()
            try:
                await self._fleet.set_user_connections(
                    self._uid, {user: self._local(user) for user in users}
                )
            except BrokerError as exc:
                self._dirty |= users
                log.warning(
                    "user connection counts not written, retried on the next heartbeat: %s",
                    exc,
                    extra={"event": "user_counts"},
                )
                return
