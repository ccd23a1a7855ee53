"""Rebalancing: a node holding more than its share of the fleet's connections sheds some.

Every ``rebalance.interval`` the node compares its connection count with the
mean of the ready nodes in the registry (as of its last heartbeat), by the
rules of :mod:`wsfleet.core.rebalance`. Above ``(1 + rebalance.tolerance)``
times the mean, in a settled fleet, it closes connections chosen at random
with 3011 (reconnect), at most ``rebalance.rate`` per second, until it is
down to the mean, never below; the load balancer spreads the reconnecting
clients, who recover what they missed from history. While it sheds, the node
refuses handshakes with 503 (:attr:`Rebalancer.shedding`), so the clients it
sheds, and anyone else, land on the other nodes instead of coming back.
After shedding it waits at least two heartbeat intervals (one for the other
nodes to write their new counts, one for this node to read them), so it
never sheds on counts from before its own shedding.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from wsfleet.core.client import ClientSession
from wsfleet.core.pacing import run_paced
from wsfleet.core.rebalance import Decision, NodeLoad, decide
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
        monotonic: Callable[[], float] = time.monotonic,
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
        self._monotonic = monotonic
        self._task: asyncio.Task[None] | None = None
        self._previous_total: int | None = None
        self.last: Decision | None = None
        """The latest decision, as ``/status`` shows it."""
        self.shedding = False
        """True while connections are being shed: new handshakes go elsewhere."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())
        self._task.add_done_callback(_report_end)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def plan(self) -> Decision:
        """What to shed now, from the registry as of the last heartbeat."""
        nodes = self._fleet.nodes
        loads = [
            NodeLoad(n.uid, n.num_clients, n.connection_limit) for n in nodes if n.phase == READY
        ]
        decision = decide(
            self._uid,
            loads,
            tolerance=self._settings.tolerance,
            previous_total=self._previous_total,
            changing=len(loads) < len(nodes),
        )
        self._previous_total = decision.total
        self.last = decision
        log.debug(
            "rebalancing: %s",
            decision.why,
            extra={"event": "rebalance_decision", "shed": decision.shed, "total": decision.total},
        )
        return decision

    async def _loop(self) -> None:
        wait = self._settings.interval
        while True:
            await asyncio.sleep(wait)
            wait = self._settings.interval
            try:
                if self._ready() and await self._step():
                    wait = max(wait, self._settle)
            except Exception:
                # A bug must not silently end rebalancing for the node's life.
                log.exception("rebalancing step failed", extra={"event": "rebalance"})

    async def _step(self) -> bool:
        """One decision, and its shedding; whether anything was shed."""
        decision = self.plan()
        if not decision.shed:
            return False
        self.shedding = True
        try:
            await self._shed(decision.shed, decision.floor)
        finally:
            self.shedding = False
        return True

    async def _shed(self, count: int, floor: int) -> None:
        log.info(
            "shedding connections",
            extra={"event": "rebalance", "connections": count, "down_to": floor},
        )
        sessions = list(self._registry)
        victims = random.sample(sessions, min(count, len(sessions)))
        # Paced like a drain, by elapsed time: a busy event loop wakes late but
        # then closes what is due, so the rate holds.

        def close(session: ClientSession) -> None:
            if self._registry.get(session.client_id) is not None:  # not gone by itself
                session.close(DisconnectCode.REBALANCE)
                self._stats.rebalanced += 1

        await run_paced(
            victims,
            len(victims) / self._settings.rate,
            close,
            monotonic=self._monotonic,
            wait=asyncio.sleep,
            stop=lambda: not self._ready() or len(self._registry) <= floor,
        )


def _report_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("rebalancing stopped", exc_info=task.exception(), extra={"event": "rebalance"})
