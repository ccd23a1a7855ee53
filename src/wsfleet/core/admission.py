"""Who may open a WebSocket on this node: the per-node and per-IP limits.

Pure bookkeeping with an injected clock. The transport asks :meth:`Admission.check`
before the upgrade, so a refusal is an HTTP status with ``Retry-After`` (clients
back off; a load balancer may try another node), and it reports every upgraded
connection's open and close so the counts are exact.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from wsfleet.core.limits import TokenBucket
from wsfleet.core.stats import NodeStats


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a handshake is refused, before the upgrade."""

    status: int
    reason: str
    retry_after: float = 0.0
    limit: str = ""
    """The name the refusal is counted under in ``wsfleet_handshakes_refused``."""


CAP_RETRY_AFTER = 2.0
"""Seconds a client refused at a cap waits: connections free up slowly, not in a second."""


class Admission:
    """Open connections by client IP, and the node's connection-rate bucket."""

    def __init__(
        self,
        *,
        connection_limit: int = 0,
        ip_connection_limit: int = 0,
        rate: float = 0.0,
        burst: int = 0,
        clock: Callable[[], float],
        stats: NodeStats,
    ) -> None:
        """``connection_limit``: open connections on the node, 0 no limit.
        ``ip_connection_limit``: open connections per client IP, 0 no limit.
        ``rate``: new connections per second, 0 no limit; ``burst`` how many at once,
        0 one second's worth.
        """
        self.connection_limit = connection_limit
        self.ip_connection_limit = ip_connection_limit
        self._bucket = TokenBucket(rate=rate, burst=burst or max(1.0, rate), clock=clock)
        self._by_ip: Counter[str] = Counter()
        self._stats = stats
        self.open = 0

    @property
    def at_capacity(self) -> bool:
        """Whether the node holds as many connections as its cap allows."""
        return 0 < self.connection_limit <= self.open

    def check(self, ip: str) -> Refusal | None:
        """Refuse a handshake from ``ip`` that a limit forbids; None lets it through.

        The caps are checked before the rate, so a refused client spends no token.
        """
        if self.at_capacity:
            return self._refuse(
                503, "node at its connection limit", CAP_RETRY_AFTER, "connection_limit"
            )
        if 0 < self.ip_connection_limit <= self._by_ip.get(ip, 0):
            return self._refuse(
                429, "too many connections from one address", CAP_RETRY_AFTER, "ip_connection_limit"
            )
        if not self._bucket.take():
            wait = max(1, math.ceil(self._bucket.retry_after()))
            return self._refuse(503, "node connection rate limit", wait, "connection_rate")
        return None

    def _refuse(self, status: int, reason: str, retry_after: float, limit: str) -> Refusal:
        self._stats.limit_hits[limit] += 1
        return Refusal(status, reason, retry_after, limit)

    def opened(self, ip: str) -> None:
        self.open += 1
        self._by_ip[ip] += 1

    def closed(self, ip: str) -> None:
        self.open -= 1
        left = self._by_ip[ip] - 1
        if left > 0:
            self._by_ip[ip] = left
        else:
            del self._by_ip[ip]

    @property
    def addresses(self) -> int:
        """Distinct client addresses with open connections."""
        return len(self._by_ip)
