"""Connections per node over time: every node's ``/status``, sampled twice a second.

Each sample is ``{"t": wall-clock time, "node": name, "up": bool,
"num_clients": int, "phase": str, "ready": bool}``; a node that does not
answer (killed, exited, not yet listening) is sampled as ``up: false`` with no
clients. The node set is read at every round, so nodes that join or leave
during the run are followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from lab.publisher import Target

__all__ = ["Observer"]

Sample = dict[str, Any]


class Observer:
    def __init__(self, targets: Callable[[], Sequence[Target]], *, interval: float = 0.5) -> None:
        self._targets = targets
        self.interval = interval
        self.samples: list[Sample] = []
        self.latest: dict[str, Sample] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=min(1.0, self.interval * 2))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                began = time.monotonic()
                await self.sample(session)
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - began)))

    async def sample(self, session: aiohttp.ClientSession) -> list[Sample]:
        """One round: every current node's status, recorded and returned."""
        targets = list(self._targets())
        round_ = await asyncio.gather(*(self._one(session, t) for t in targets))
        for sample in round_:
            self.samples.append(sample)
            self.latest[sample["node"]] = sample
        return list(round_)

    async def _one(self, session: aiohttp.ClientSession, target: Target) -> Sample:
        t = round(time.time(), 3)
        try:
            async with session.get(f"{target.internal_url}/status") as response:
                status = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return {
                "t": t,
                "node": target.name,
                "up": False,
                "num_clients": 0,
                "phase": "",
                "ready": False,
            }
        return {
            "t": t,
            "node": target.name,
            "up": True,
            "num_clients": int(status.get("num_clients", 0)),
            "phase": str(status.get("phase", "")),
            "ready": bool(status.get("ready", False)),
        }

    def clients_now(self) -> dict[str, int]:
        """The latest sample's connection count of every node sampled so far."""
        return {name: s["num_clients"] for name, s in self.latest.items()}
