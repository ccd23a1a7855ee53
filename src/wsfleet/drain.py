"""The drain of a node on SIGTERM: announce, refuse, close in paced batches, finish.

1. ANNOUNCING: the phase is DRAINING, so ``/readyz`` answers 503, but
   handshakes are still accepted for ``drain.readiness_delay`` seconds, while
   endpoints and the ingress stop routing here.
2. CLOSING: handshakes are refused with 503 and ``Retry-After``; open
   connections are closed with 3001 (reconnect) in jittered batches spread
   over ``drain.window`` (see :mod:`wsfleet.core.pacing` for the pace). Clients
   reconnect to other nodes and recover what they missed from history.
3. FINISHING: the listener stops and ``finish`` runs (leave the fleet, close
   the broker, the internal server last).

:meth:`Drainer.hurry` (a second signal) skips what is left of the waits and
closes the remaining connections at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from wsfleet.core.drain import DrainProgress, DrainStep
from wsfleet.core.pacing import run_paced
from wsfleet.protocol.codes import Disconnect
from wsfleet.settings import DrainSettings

log = logging.getLogger("wsfleet.drain")


class Closable(Protocol):
    @property
    def closed(self) -> bool: ...

    def close(self, disconnect: Disconnect) -> None: ...


class Drainer:
    """Runs one drain; the node owns it and reads :attr:`progress`."""

    def __init__(
        self,
        settings: DrainSettings,
        *,
        connections: Callable[[], Sequence[Closable]],
        finish: Callable[[], Awaitable[None]],
        monotonic: Callable[[], float],
        rng: Callable[[], float] = random.random,
    ) -> None:
        """``connections``: every open connection now, connected or not yet;
        ``finish``: what follows the closes."""
        self._settings = settings
        self._connections = connections
        self._finish = finish
        self._monotonic = monotonic
        self._rng = rng
        self._hurry = asyncio.Event()
        self.progress = DrainProgress()

    @property
    def accepting(self) -> bool:
        """Whether handshakes are still welcome (during the readiness delay)."""
        return self.progress.step is DrainStep.ANNOUNCING

    def hurry(self) -> None:
        """Cut the drain short: no more waiting, close what is left now."""
        step = self.progress.step
        if step in (DrainStep.FINISHING, DrainStep.DONE):
            return  # nothing left to hurry
        if not self._hurry.is_set():
            self.progress.hurried = True
            self._hurry.set()
            log.warning("drain cut short", extra={"event": "drain_hurried"})

    async def run(self, disconnect: Disconnect, *, urgent: bool = False) -> None:
        """Drain; ``urgent`` skips the delay and the pacing (a stop, not a rollout)."""
        if urgent:
            self._hurry.set()
        p = self.progress
        p.started_at = self._monotonic()
        p.step = DrainStep.ANNOUNCING
        await self._wait(self._settings.readiness_delay)
        p.step = DrainStep.CLOSING
        await self._close_paced(disconnect)
        p.step = DrainStep.FINISHING
        log.info(
            "connections drained",
            extra={"event": "drained", "closed": p.closed, "hurried": p.hurried},
        )
        await self._finish()
        p.step = DrainStep.DONE

    def _close(self, conn: Closable, disconnect: Disconnect) -> None:
        if not conn.closed:  # a client may have left by itself meanwhile
            conn.close(disconnect)
            self.progress.closed += 1

    async def _wait(self, seconds: float) -> None:
        if seconds > 0 and not self._hurry.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), seconds)

    async def _close_paced(self, disconnect: Disconnect) -> None:
        p = self.progress
        window = self._settings.window
        pending = list(self._connections())
        random.shuffle(pending)  # no order of arrival leaks into the order of leaving
        p.total = len(pending)
        log.info(
            "closing connections",
            extra={"event": "drain_closing", "connections": p.total, "window": window},
        )
        await run_paced(
            pending,
            window,
            lambda conn: self._close(conn, disconnect),
            monotonic=self._monotonic,
            wait=self._wait,
            hurry=self._hurry.is_set,
            rng=self._rng,
        )
        # Upgraded just before the refusals began, after the list was taken.
        for late in self._connections():
            self._close(late, disconnect)
        await asyncio.sleep(0)  # let the close frames reach the sockets
