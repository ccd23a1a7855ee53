"""The steps of a drain and the pace of its closes: pure arithmetic, no clock reads.

A drain closes ``total`` connections evenly over ``window`` seconds: by
``elapsed`` seconds into the window, ``ceil(total * elapsed / window)`` of
them are due. The closer wakes at jittered ticks and closes whatever is due,
so the reconnect rate the rest of the fleet sees is about ``total / window``
per second whatever the tick, and a window of 0 closes everything at once.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class DrainStep(enum.Enum):
    IDLE = "idle"
    """Not draining."""
    ANNOUNCING = "announcing"
    """Not ready, still accepting: endpoints and the ingress catch up."""
    CLOSING = "closing"
    """Refusing handshakes; closing open connections in paced batches."""
    FINISHING = "finishing"
    """Every connection closed: leaving the fleet, closing the broker."""
    DONE = "done"


MIN_TICK = 0.05
MAX_TICK = 1.0
TICKS_PER_WINDOW = 100


def due(total: int, window: float, elapsed: float) -> int:
    """How many of ``total`` closes are due ``elapsed`` seconds into a ``window``."""
    if window <= 0 or elapsed >= window:
        return total
    if elapsed <= 0:
        return 0
    return min(total, math.ceil(total * elapsed / window))


def tick(window: float, jitter: float) -> float:
    """Seconds to the next batch; ``jitter`` in [0, 1) spreads ticks by ±50%."""
    base = min(MAX_TICK, max(MIN_TICK, window / TICKS_PER_WINDOW))
    return base * (0.5 + jitter)


@dataclass(slots=True)
class DrainProgress:
    """What ``/status`` and ``/metrics`` show of a drain."""

    step: DrainStep = DrainStep.IDLE
    started_at: float = 0.0
    """Monotonic seconds when the signal came."""
    total: int = 0
    """Connections open when the closing began."""
    closed: int = 0
    """Connections the drain closed (clients that left by themselves are not counted)."""
    hurried: bool = False
    """A second signal cut the drain short."""

    def as_dict(self, now: float, remaining: int) -> dict[str, object]:
        active = self.step is not DrainStep.IDLE
        return {
            "step": self.step.value,
            "elapsed": round(now - self.started_at, 3) if active else 0.0,
            "total": self.total,
            "closed": self.closed,
            "remaining": remaining if active else 0,
            "hurried": self.hurried,
        }
