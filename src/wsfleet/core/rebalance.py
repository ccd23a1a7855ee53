"""When a node sheds connections so the fleet evens out: pure arithmetic.

After a scale-up the new nodes get only new connections: the long-lived ones
stay where they are. The rules, applied to the ready nodes of the registry
(every count from the same registry read, so they are comparable):

* A node at its connection cap can take nobody: it is left out of the mean,
  and it sheds nothing itself (its cap already bounds it).
* The fleet must be settled: no node is starting or draining, and its total
  has changed by no more than the tolerance since the previous decision.
  While clients are still arriving (a start, a flood) or moving (a rollout
  drains a node), counts taken at different moments differ for no lasting
  reason, and shedding would only add reconnects (in a rollout, clients
  moved to a node that is drained next move twice).
* A node holding more than ``(1 + tolerance)`` times the mean of the nodes
  that can take connections sheds down to the mean, rounded up, never below.
* A node holding less than ``(1 - tolerance)`` times that mean is short of
  its share, which the others hold between them: every node above the mean,
  even within the tolerance, sheds down to the mean. Without this rule a new
  node could stay far below the mean for good while every other node sits
  just under the upper bound (four nodes at +10% leave the fifth at -40%).
  So a settled fleet holds every node within the tolerance of the mean, on
  both sides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NodeLoad:
    uid: str
    connections: int
    limit: int = 0
    """The node's connection cap; 0: none."""

    @property
    def full(self) -> bool:
        return 0 < self.limit <= self.connections


@dataclass(frozen=True, slots=True)
class Decision:
    shed: int
    """Connections to close now; 0: none."""
    floor: int
    """Stop shedding when down to this many."""
    total: int
    """The fleet's connections, for the next decision's settled check."""
    why: str


def decide(
    own: str,
    loads: Sequence[NodeLoad],
    *,
    tolerance: float,
    previous_total: int | None,
    changing: bool = False,
) -> Decision:
    """What node ``own`` should shed, given the ready nodes' ``loads``.

    ``changing``: some node of the fleet is starting or draining.
    """
    total = sum(load.connections for load in loads)
    mine = next((load for load in loads if load.uid == own), None)
    open_nodes = [load for load in loads if not load.full]
    if mine is None or mine.full:
        return Decision(0, 0, total, "this node is full or not listed")
    if len(open_nodes) < 2:
        return Decision(0, 0, total, "no other node can take connections")
    if changing:
        return Decision(0, 0, total, "a node is starting or draining")
    if previous_total is None or abs(total - previous_total) > tolerance * previous_total:
        return Decision(0, 0, total, "the fleet is not settled")
    mean = sum(load.connections for load in open_nodes) / len(open_nodes)
    floor = math.ceil(mean)
    if mine.connections > mean * (1 + tolerance):
        return Decision(mine.connections - floor, floor, total, "above the mean")
    short = min(load.connections for load in open_nodes) < mean * (1 - tolerance)
    if short and mine.connections > floor:
        return Decision(mine.connections - floor, floor, total, "another node is short")
    return Decision(0, floor, total, "within tolerance")
