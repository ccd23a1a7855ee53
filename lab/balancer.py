"""What the lab asks of a load balancer in front of the fleet, whichever it is.

A balancer is started with the nodes (:class:`Backend`) it sends clients to,
reloaded with a new node set when nodes join or leave (as an ingress
controller follows a Service's endpoints), and stopped. The implementations
are real programs: :mod:`lab.nginx` (the default) and :mod:`lab.haproxy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

__all__ = ["Backend", "Balancer"]


class Backend(NamedTuple):
    """One node as a balancer sees it: public port for clients, internal port for checks."""

    name: str
    port: int
    internal_port: int


class Balancer(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def ws_url(self) -> str: ...

    async def start(self, backends: Sequence[Backend]) -> None: ...

    async def reload(self, backends: Sequence[Backend]) -> None: ...

    async def stop(self) -> None: ...

    def log_tail(self, lines: int = 40) -> str: ...
