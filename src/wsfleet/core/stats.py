"""Plain counters of what a node did, read by the metrics and status endpoints.

The hot path increments ints on one object instead of calling a metrics
library: a fan-out to thousands of subscribers must not pay a lock or a label
lookup per message. The internal port turns these into Prometheus metrics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class NodeStats:
    """Counters since the node started. Gauges are computed by their owners."""

    connections_accepted: int = 0
    connections_closed: int = 0
    handshakes_refused: Counter[str] = field(default_factory=Counter)
    """Refused upgrades by reason (``cap``, ``rate``, ``draining`` ...)."""
    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0
    frames_out: int = 0
    publications_received: int = 0
    """Publications this node received from the broker."""
    commands: Counter[str] = field(default_factory=Counter)
    """Commands handled, by method."""
    errors: Counter[int] = field(default_factory=Counter)
    """Error replies, by protocol error code."""
    disconnects: Counter[int] = field(default_factory=Counter)
    """Server-side closes, by disconnect code."""
    outbox_overflows: int = 0
    """Connections closed as slow consumers."""
    limit_hits: Counter[str] = field(default_factory=Counter)
    """Limits that refused something, by limit name."""
    gaps_detected: int = 0
    """Live publications that arrived with an offset gap."""
    rebalanced: int = 0
    """Connections closed to even out the fleet."""
