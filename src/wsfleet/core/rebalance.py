"""How many connections a node sheds so the fleet evens out: pure arithmetic.

After a scale-up the new nodes get only new connections: the long-lived ones
stay where they are. A node holding more than ``(1 + tolerance)`` times the
mean of the ready nodes sheds down to the mean (rounded up), never below, and
the load balancer spreads the reconnecting clients over every node.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def fleet_mean(counts: Sequence[int]) -> float:
    return sum(counts) / len(counts) if counts else 0.0


def excess(own: int, counts: Sequence[int], tolerance: float) -> int:
    """Connections to shed: ``own`` above the mean of ``counts``, when beyond tolerance.

    ``counts`` are the connection counts of the ready nodes, this one included;
    with fewer than two there is nobody to shed to.
    """
    if len(counts) < 2:
        return 0
    mean = fleet_mean(counts)
    if own <= mean * (1 + tolerance):
        return 0
    return max(0, own - math.ceil(mean))
