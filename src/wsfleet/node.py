"""The composition root: builds one node from its settings and runs it.

Everything is wired here and nowhere else: the broker, the hub, the session
context, the public WebSocket listener and the internal HTTP server. Startup
and shutdown are ordered and idempotent:

start: broker -> internal HTTP (so /livez answers during startup) -> public
listener -> phase READY.
stop: phase DRAINING -> stop accepting -> close connections with the
shutdown code -> broker -> internal HTTP last -> phase STOPPED.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import time
from dataclasses import dataclass, field

from picows import WSUpgradeRequest

from wsfleet import __version__
from wsfleet.auth import TokenVerifier
from wsfleet.brokers import load_broker, shown_url
from wsfleet.brokers.base import BrokerError, HistoryQuery
from wsfleet.core.channels import ChannelRules
from wsfleet.core.client import ClientSession, SessionContext
from wsfleet.core.hub import Hub
from wsfleet.core.lifecycle import Lifecycle, Phase
from wsfleet.core.registry import ConnectionRegistry
from wsfleet.core.stats import NodeStats
from wsfleet.http.server import InternalServer
from wsfleet.protocol.codes import Disconnect, DisconnectCode, ProtocolError
from wsfleet.settings import Settings
from wsfleet.transport.websocket import Refusal, WebSocketServer

log = logging.getLogger("wsfleet.node")


@dataclass(slots=True)
class Addresses:
    """Where the node listens, once started (ports resolved when 0 was asked)."""

    public: list[tuple[str, int]] = field(default_factory=list)
    internal: list[tuple[str, int]] = field(default_factory=list)


class Node:
    """One wsfleet node."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.server.node_name or f"{socket.gethostname()}-{os.getpid()}"
        self.started_at = time.time()
        self.stats = NodeStats()
        self.lifecycle = Lifecycle()
        self.rules = ChannelRules(settings.channel, settings.client, dev=settings.dev)
        self.broker, self.presence = load_broker(
            settings.broker.url, key_prefix=settings.broker.key_prefix, node_id=self.name
        )
        self.hub = Hub(self.broker, self.stats)
        self.registry: ConnectionRegistry[ClientSession] = ConnectionRegistry()
        self.tokens = TokenVerifier(settings.auth)
        self.addresses = Addresses()
        self._ws: WebSocketServer | None = None
        self._http: InternalServer | None = None
        self._stopping = False
        self._background: set[asyncio.Task[None]] = set()
        self._stopped = asyncio.Event()

    def _context(self, loop: asyncio.AbstractEventLoop) -> SessionContext:
        return SessionContext(
            node_name=self.name,
            version=__version__,
            client=self.settings.client,
            rules=self.rules,
            broker=self.broker,
            presence=self.presence,
            hub=self.hub,
            tokens=self.tokens,
            allow_anonymous=self.settings.auth.allow_anonymous_connect_without_token,
            stats=self.stats,
            registry=self.registry,
            loop=loop,
            clock=time.time,
            monotonic=time.monotonic,
        )

    # -- the handshake gate --------------------------------------------------------

    def gate(self, request: WSUpgradeRequest) -> Refusal | None:
        """Refuse handshakes the node must not take, before the upgrade."""
        if not self.lifecycle.accepting:
            reason = self.lifecycle.phase.value
            self.stats.handshakes_refused[reason] += 1
            return Refusal(503, f"node is {reason}", retry_after=1)
        return None

    def not_ready_reason(self) -> str | None:
        """Why ``/readyz`` fails, or None when the node should get traffic."""
        if self.lifecycle.phase is not Phase.READY:
            return f"node is {self.lifecycle.phase.value}"
        broker = self.broker.unavailable_reason()
        if broker:
            return broker
        return None

    # -- broker outages -----------------------------------------------------------------

    def _on_resubscribed(self, channels: set[str]) -> None:
        task = asyncio.get_running_loop().create_task(self._resync(channels))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _resync(self, channels: set[str]) -> None:
        """After an outage, send subscribers that missed publications to history."""
        for channel in channels:
            try:
                opts = self.rules.resolve(channel)
                if not opts.history_enabled:
                    continue
                page = await self.broker.history(channel, HistoryQuery(limit=0), opts.history)
            except (ProtocolError, BrokerError) as exc:
                log.warning("resync of %s skipped: %s", channel, exc, extra={"event": "resync"})
                continue
            count = self.hub.resync_behind(channel, page.position)
            if count:
                log.info(
                    "%d subscriber(s) of %s resync after an outage",
                    count,
                    channel,
                    extra={"event": "resync", "channel": channel},
                )

    # -- start and stop --------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        server = self.settings.server
        self.broker.on_resubscribed = self._on_resubscribed
        await self.broker.start(self.hub)
        self._http = InternalServer(self)
        self.addresses.internal = await self._http.start(server.internal_host, server.internal_port)
        self._ws = WebSocketServer(self._context(loop), self.gate)
        self.addresses.public = await self._ws.start(server.host, server.port)
        self.lifecycle.advance(Phase.READY)
        log.info(
            "node ready",
            extra={
                "event": "ready",
                "node": self.name,
                "public": _fmt(self.addresses.public),
                "internal": _fmt(self.addresses.internal),
                "broker": shown_url(self.settings.broker.url),
            },
        )

    async def stop(self, disconnect: Disconnect = DisconnectCode.SHUTDOWN) -> None:
        """Close everything in order; safe to call more than once."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        self.lifecycle.advance(Phase.DRAINING)
        try:
            if self._ws is not None:
                self._ws.stop_listening()
            for session in list(self.registry):
                session.close(disconnect)
            await asyncio.sleep(0)  # let close frames reach the sockets
            await self.broker.close()
        finally:
            if self._http is not None:
                await self._http.stop()
            self.lifecycle.advance(Phase.STOPPED)
            self._stopped.set()
            log.info("node stopped", extra={"event": "stopped", "node": self.name})

    # -- what /status and the info API report ---------------------------------------------

    def snapshot(self) -> dict[str, object]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "uid": self.name,
            "name": self.name,
            "version": __version__,
            "phase": self.lifecycle.phase.value,
            "num_clients": len(self.registry),
            "num_users": self.registry.num_users,
            "num_subs": self.hub.num_subscriptions,
            "num_channels": self.hub.num_channels,
            "uptime": int(time.time() - self.started_at),
            "process": {"cpu": usage.ru_utime + usage.ru_stime, "rss": _rss_bytes()},
        }


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _fmt(addrs: list[tuple[str, int]]) -> str:
    return ",".join(f"{h}:{p}" for h, p in addrs)
