"""Rebalancing: a node holding more than its share of the fleet's connections sheds some.

Every ``rebalance.interval`` the node compares its connection count with the
mean of the ready nodes in the registry (as of the last heartbeat, its own
count fresh). Above ``(1 + rebalance.tolerance)`` times the mean it closes
connections chosen at random with 3011 (reconnect), at most
``rebalance.rate`` per second, until it is down to the mean, never below;
the load balancer spreads the reconnecting clients, who recover what they
missed from history. After shedding it waits at least two heartbeat
intervals (one for the other nodes to write their new counts, one for this
node to read them), so it never sheds on counts from before its own shedding.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable

from wsfleet.core.client import ClientSession
from wsfleet.core.rebalance import excess, fleet_mean
from wsfleet.core.registry import ConnectionRegistry
from wsfleet.core.stats import NodeStats
from wsfleet.fleet import FleetMember
from wsfleet.protocol.codes import DisconnectCode
from wsfleet.settings import RebalanceSettings

log = logging.getLogger("wsfleet.rebalance")

READY = "ready"


class Rebalancer:
    """Runs the shedding loop of one node; :meth:`start` and :meth:`stop` bracket it."""

    def __init__(
        self,
        settings: RebalanceSettings,
        *,
        fleet: FleetMember,
        uid: str,
        registry: ConnectionRegistry[ClientSession],
        ready: Callable[[], bool],
        stats: NodeStats,
        settle: float,
    ) -> None:
        """``ready``: whether this node serves (a draining node never sheds).
        ``settle``: seconds after shedding until the registry shows its effect.
        """
        self._settings = settings
        self._fleet = fleet
        self._uid = uid
        self._registry = registry
        self._ready = ready
        self._stats = stats
        self._settle = settle
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def plan(self) -> tuple[int, int]:
        """(connections to shed, the count to stop at) from the registry as last read."""
        own = len(self._registry)
        counts = [own] + [
            n.num_clients for n in self._fleet.nodes if n.uid != self._uid and n.phase == READY
        ]
        return excess(own, counts, self._settings.tolerance), math.ceil(fleet_mean(counts))

    async def _loop(self) -> None:
        wait = self._settings.interval
        while True:
            await asyncio.sleep(wait)
            wait = self._settings.interval
            if not self._ready():
                continue
            count, floor = self.plan()
            if count:
                await self._shed(count, floor)
                wait = max(wait, self._settle)

    async def _shed(self, count: int, floor: int) -> None:
        log.info(
            "shedding connections",
            extra={"event": "rebalance", "connections": count, "down_to": floor},
        )
        victims = random.sample(list(self._registry), count)
        pause = 1.0 / self._settings.rate
        for session in victims:
            if not self._ready() or len(self._registry) <= floor:
                return
            if self._registry.get(session.client_id) is None:
                continue  # left by itself meanwhile
            session.close(DisconnectCode.REBALANCE)
            self._stats.rebalanced += 1
            await asyncio.sleep(pause)
