"""picows' server protocol, told the TCP peer before the upgrade.

picows hands the handshake gate the HTTP request only. The per-IP limit and
``X-Forwarded-For`` need the peer's address at that moment, so each
connection's protocol records it when TCP connects and gives it to the gate
with the request. The constructor arguments are those ``ws_create_server``
passes (picows 2.x, pinned in pyproject.toml); the transport tests fail if
they change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from picows import WSUpgradeRequest
from picows.picows import (  # type: ignore[attr-defined]
    WSAutoPingStrategy,
    WSProtocol,
)

LISTEN_BACKLOG = 4096
"""Connections the kernel queues before the node accepts them (capped by
net.core.somaxconn). A drain or a rebalance elsewhere sends hundreds of
reconnects a second; asyncio's default of 100 overflows under that on a busy
node, and the overflow shows as connect timeouts at the load balancer."""

Factory = Callable[[WSUpgradeRequest, str], Any]
"""Called with the upgrade request and the peer's address; returns what picows expects."""


class _Handshake:
    """One connection's call into the gate, with the peer filled in."""

    __slots__ = ("factory", "peer")

    def __init__(self, factory: Factory) -> None:
        self.factory = factory
        self.peer = ""

    def __call__(self, request: WSUpgradeRequest) -> Any:
        return self.factory(request, self.peer)


class PeerProtocol(WSProtocol):  # type: ignore[misc]
    # Slotted: one per connection, and a subclass of an extension type would
    # otherwise carry a full instance dict.
    __slots__ = ("_handshake",)

    def __init__(self, handshake: _Handshake, *args: Any) -> None:
        super().__init__(*args)
        self._handshake: _Handshake | None = handshake

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        handshake = self._handshake
        if handshake is not None:
            peer = transport.get_extra_info("peername")
            handshake.peer = str(peer[0]) if isinstance(peer, tuple) else ""
            self._handshake = None  # picows holds it until the upgrade
        super().connection_made(transport)


async def create_server(
    factory: Factory,
    host: str,
    port: int,
    *,
    max_frame_size: int,
    read_buffer_init_size: int,
    handshake_timeout: float,
    logger_name: str,
) -> asyncio.Server:
    """Listen on ``host:port``; ``factory`` decides each handshake, knowing the peer."""
    # An adapter, not the Logger itself: given a Logger, picows makes a child
    # logger per connection (about 600 bytes each, for the life of the
    # connection); given a logger-like object, it uses that one for all.
    logger = logging.LoggerAdapter(logging.getLogger(logger_name), {})

    def protocol() -> PeerProtocol:
        handshake = _Handshake(factory)
        return PeerProtocol(
            handshake,
            None,  # host and port: a server has none
            None,  # path
            False,  # is_client_side
            handshake,  # the listener factory
            logger,
            True,  # disconnect_on_exception
            handshake_timeout,
            False,  # enable_auto_ping: the session pings at the protocol level
            20.0,
            20.0,
            WSAutoPingStrategy.PING_WHEN_IDLE,
            True,  # enable_auto_pong
            max_frame_size,
            None,  # extra headers
            read_buffer_init_size,
        )

    loop = asyncio.get_running_loop()
    return await loop.create_server(
        protocol, host, port, reuse_address=True, backlog=LISTEN_BACKLOG
    )
