"""The fleet tests' node processes: :mod:`lab.nodes`, where the fleet lab uses them too.

What this harness proves by itself: the documented way to form a fleet,
``wsfleet serve --broker redis://... --port P --internal-port I --name N``
run once per node with the same broker URL, gives nodes that start, answer
``/readyz`` and stop on SIGTERM. The fleet tests then check, through these
processes only (the SDK over WebSocket, ``cent`` over the server API, plain
HTTP for health), that the nodes act as one server. See :mod:`lab.nodes` for
how each node is started and stopped.
"""

from __future__ import annotations

from lab.nodes import (
    READY_TIMEOUT,
    Fleet,
    NodeNotReady,
    NodeProcess,
    fleet,
    running_fleet,
    wsfleet_command,
)

__all__ = [
    "READY_TIMEOUT",
    "Fleet",
    "NodeNotReady",
    "NodeProcess",
    "fleet",
    "running_fleet",
    "wsfleet_command",
]
