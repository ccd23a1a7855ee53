"""What the load generator needs to know to start one peer server.

Shared by the Python peers (:mod:`benchmarks.peers.python_env`) and the Node and
picows peers (:mod:`benchmarks.peers.node_env`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["PeerScript", "PeerSpec", "Protocol", "specs"]

Protocol = Literal["simple", "socketio"]


@dataclass(frozen=True)
class PeerSpec:
    """One peer server.

    ``command`` is the argv before the contract's flags (``--host H --port P
    [--redis URL] [--publish-port Q]``), e.g. ``[python, "benchmarks/peers/x.py"]``.
    ``two_node`` says whether the peer accepts ``--redis``; ``publish_port`` says
    whether it serves ``POST /publish`` on a separate ``--publish-port``;
    ``always_redis`` says the peer is run with ``--redis`` even as a single node, because
    that is its production configuration (Django Channels: the in-memory layer is for
    development, and each new connection took longer than the one before).
    """

    name: str
    protocol: Protocol
    command: list[str]
    two_node: bool
    publish_port: bool = False
    always_redis: bool = False


@dataclass(frozen=True)
class PeerScript:
    """A peer's script (relative to the project root) and what it speaks."""

    script: Path
    protocol: Protocol
    two_node: bool
    always_redis: bool = False


def specs(root: Path, interpreter: str, scripts: Mapping[str, PeerScript]) -> dict[str, PeerSpec]:
    """A :class:`PeerSpec` per script, each run as ``interpreter <root>/<script>``."""
    return {
        name: PeerSpec(
            name=name,
            protocol=peer.protocol,
            command=[interpreter, str(root / peer.script)],
            two_node=peer.two_node,
            always_redis=peer.always_redis,
        )
        for name, peer in scripts.items()
    }
