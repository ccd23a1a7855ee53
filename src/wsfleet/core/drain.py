"""The steps of a drain and its progress, as ``/status`` and ``/metrics`` show them.

The pace of the closes is :mod:`wsfleet.core.pacing`.
"""

from __future__ import annotations

import enum
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
