"""The phases of a node's life, as an explicit state machine.

A node is STARTING until its listeners and broker are up, READY while it
serves, DRAINING from the first shutdown signal until its connections are
closed, and STOPPED after. Health endpoints and the handshake gate read the
phase; only the node moves it, and only forward.
"""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"


_ORDER = {Phase.STARTING: 0, Phase.READY: 1, Phase.DRAINING: 2, Phase.STOPPED: 3}


class Lifecycle:
    """Holds the phase; moves are forward-only so a late READY cannot undo a drain."""

    def __init__(self) -> None:
        self.phase = Phase.STARTING

    def advance(self, phase: Phase) -> bool:
        """Move to ``phase`` if it is later than the current one; return whether it moved."""
        if _ORDER[phase] <= _ORDER[self.phase]:
            return False
        self.phase = phase
        return True

    @property
    def accepting(self) -> bool:
        """Whether new connections are welcome."""
        return self.phase is Phase.READY
