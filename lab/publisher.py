"""A steady publisher with sequence numbers, surviving nodes that go away.

It publishes ``{"seq": n}`` for n = 0, 1, 2 ... to one channel through the
server API of the fleet's nodes (round robin over the nodes alive at the
moment), at a fixed rate. A publication that fails (a node gone, draining,
Redis down) is tried again on the next node with the same sequence number
and the same ``idempotency_key``, so a retry of a publication that did land
(its reply lost) is not published twice: the server answers the first
result. The next sequence number waits until the current one is acknowledged:
sequence numbers go out in order, and the rate slips (without catching up in a
burst) while publishing is impossible.

Everything is recorded per sequence number: when it was first sent, when it
was acknowledged, with which offset and epoch, through which node, and the
errors met on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.api import ApiError, ServerApi

__all__ = ["Published", "Publisher", "Target"]


@dataclass(frozen=True)
class Target:
    """A node the publisher may use: its name and internal URL."""

    name: str
    internal_url: str


@dataclass
class Published:
    seq: int
    sent: float
    """Wall-clock time of the first attempt."""
    acked: float = 0.0
    """Wall-clock time of the successful reply; 0 if none came."""
    offset: int = 0
    epoch: str = ""
    node: str = ""
    attempts: int = 0
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Publisher:
    def __init__(
        self,
        api: ServerApi,
        targets: Callable[[], Sequence[Target]],
        *,
        channel: str,
        rate: float,
        run_id: str,
        give_up_after: float = 60.0,
    ) -> None:
        self._api = api
        self._targets = targets
        self.channel = channel
        self.rate = rate
        self.run_id = run_id
        self.give_up_after = give_up_after
        self.records: list[Published] = []
        self._turn = 0

    @property
    def last_acked(self) -> int:
        """The highest acknowledged sequence number; -1 if none."""
        return max((p.seq for p in self.records if p.acked), default=-1)

    @property
    def acked(self) -> int:
        return sum(1 for p in self.records if p.acked)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish at :attr:`rate` until ``stop`` is set (the one in flight is finished)."""
        period = 1.0 / self.rate
        next_at = time.monotonic()
        seq = 0
        while not stop.is_set():
            await self.publish(seq)
            seq += 1
            next_at = max(next_at + period, time.monotonic() - period)
            delay = next_at - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def publish(self, seq: int) -> Published:
        """Publish ``seq`` until a node acknowledges it (or ``give_up_after`` seconds pass)."""
        record = Published(seq=seq, sent=time.time())
        self.records.append(record)
        started = time.monotonic()
        backoff = 0.05
        body = {
            "channel": self.channel,
            "data": {"seq": seq},
            "idempotency_key": f"{self.run_id}-{seq}",
        }
        while time.monotonic() - started < self.give_up_after:
            target = self._next_target()
            record.attempts += 1
            if target is None:
                record.errors.append("no node to publish to")
            else:
                try:
                    result = await self._api.call(target.internal_url, "publish", body)
                except ApiError as exc:
                    record.errors.append(f"{target.name}: {exc}"[:200])
                else:
                    record.acked = time.time()
                    record.offset = int(result.get("offset", 0))
                    record.epoch = str(result.get("epoch", ""))
                    record.node = target.name
                    return record
            await asyncio.sleep(backoff)
            backoff = min(0.5, backoff * 2)
        return record

    def _next_target(self) -> Target | None:
        targets = list(self._targets())
        if not targets:
            return None
        self._turn += 1
        return targets[self._turn % len(targets)]
