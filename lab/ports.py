"""Free loopback ports for the processes the lab and the tests start.

A port is free when it can be bound now; nothing stops another process from
taking it before the one it is meant for binds it, so starters retry with new
ports when a bind fails (see :mod:`lab.nodes`).
"""

from __future__ import annotations

import random
import socket

__all__ = ["bindable", "free_port", "node_port"]


def bindable(port: int) -> bool:
    """Whether ``port`` can be bound on 127.0.0.1 right now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(*, cluster_bus: bool = False) -> int:
    """A free loopback port; with ``cluster_bus`` also port + 10000 (Redis Cluster's bus)."""
    if not cluster_bus:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            return port
    for _ in range(1000):
        port = random.randint(20000, 50000)
        if bindable(port) and bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


_handed_out: set[int] = set()


def node_port() -> int:
    """A free port never handed out before by this process.

    The OS may offer a port it just offered again (nothing was bound to it in
    between), so two nodes, or a node's two listeners, could get the same one.
    """
    while True:
        port = free_port()
        if port not in _handed_out:
            _handed_out.add(port)
            return port
