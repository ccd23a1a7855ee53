"""The composition root: builds one node from its settings and runs it.

Everything is wired here and nowhere else: the broker, the hub, the session
context, the public WebSocket listener and the internal HTTP server. Startup
and shutdown are ordered and idempotent:

start: broker -> fleet registration (so presence written by the first
clients counts) -> internal HTTP (so /livez answers during startup) ->
public listener -> phase READY -> rebalancing.
drain (SIGTERM): phase DRAINING -> keep accepting for drain.readiness_delay
-> refuse handshakes -> close connections in paced batches with the shutdown
code (:mod:`wsfleet.drain`) -> stop listening -> leave the fleet -> broker
-> internal HTTP last -> phase STOPPED. ``stop`` is the same without the
waits.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import resource
import secrets
import socket
import time
from dataclasses import dataclass, field

from wsfleet import __version__
from wsfleet.auth import TokenVerifier
from wsfleet.brokers import load_broker, shown_url
from wsfleet.brokers.base import BrokerError, HistoryQuery, NodeInfo
from wsfleet.core.admission import Admission, Refusal
from wsfleet.core.channels import ChannelRules
from wsfleet.core.client import ClientSession, SessionContext, SessionTimers
from wsfleet.core.client_ip import TrustedProxies
from wsfleet.core.hub import Hub
from wsfleet.core.lifecycle import Lifecycle, Phase
from wsfleet.core.registry import ConnectionRegistry
from wsfleet.core.stats import NodeStats
from wsfleet.core.user_limit import UserConnections
from wsfleet.drain import Drainer
from wsfleet.fleet import FleetMember
from wsfleet.http.server import InternalServer
from wsfleet.protocol.codes import Disconnect, DisconnectCode, ProtocolError
from wsfleet.rebalance import Rebalancer
from wsfleet.settings import Settings
from wsfleet.transport.websocket import WebSocketServer

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
        # Unique per process life: a restarted node is a new member of the fleet.
        self.uid = secrets.token_hex(6)
        self.started_at = time.time()
        self.stats = NodeStats()
        self.lifecycle = Lifecycle()
        self.rules = ChannelRules(settings.channel, settings.client, dev=settings.dev)
        self.broker, self.presence, fleet = load_broker(
            settings.broker.url, key_prefix=settings.broker.key_prefix, node_id=self.uid
        )
        self.hub = Hub(self.broker, self.stats)
        self.registry: ConnectionRegistry[ClientSession] = ConnectionRegistry()
        self.users = UserConnections(
            fleet,
            self.uid,
            limit=settings.client.user_connection_limit,
            user_count=self.registry.user_count,
            stats=self.stats,
        )
        self.fleet = FleetMember(
            fleet,
            uid=self.uid,
            settings=settings.fleet,
            describe=self.describe,
            registry=self.registry,
            hub=self.hub,
            users=self.users,
            monotonic=time.monotonic,
        )
        self.tokens = TokenVerifier(settings.auth)
        server = settings.server
        self.admission = Admission(
            connection_limit=server.connection_limit,
            ip_connection_limit=server.ip_connection_limit,
            rate=server.connection_rate_limit,
            burst=server.connection_rate_burst,
            clock=time.monotonic,
            stats=self.stats,
        )
        self.drainer = Drainer(
            settings.drain,
            connections=self._open_sessions,
            finish=self._finish,
            monotonic=time.monotonic,
        )
        self.rebalancer = self._rebalancer()
        self.addresses = Addresses()
        self._ws: WebSocketServer | None = None
        self._timers: SessionTimers | None = None
        self._http: InternalServer | None = None
        self._stopping = False
        self._announce: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._stopped = asyncio.Event()

    def _rebalancer(self) -> Rebalancer | None:
        mode = self.settings.rebalance.mode
        shared = not self.settings.broker.url.startswith("memory:")
        if mode == "off" or (mode == "auto" and not shared):
            return None
        return Rebalancer(
            self.settings.rebalance,
            fleet=self.fleet,
            uid=self.uid,
            registry=self.registry,
            ready=lambda: self.lifecycle.phase is Phase.READY,
            stats=self.stats,
            settle=2 * self.settings.fleet.heartbeat_interval,
        )

    def _context(self, loop: asyncio.AbstractEventLoop) -> SessionContext:
        timers = self._timers = SessionTimers(loop, self.settings.client)
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
            users=self.users,
            loop=loop,
            clock=time.time,
            monotonic=time.monotonic,
            timers=timers,
        )

    # -- the handshake gate --------------------------------------------------------

    def gate(self, ip: str) -> Refusal | None:
        """Refuse handshakes the node must not take, before the upgrade.

        The node's own caps and rate come before the fleet's rate, so a
        handshake this node would refuse anyway spends none of the fleet's share.
        """
        refusal = self._refusal(ip)
        if refusal is not None:
            self.stats.handshakes_refused[refusal.limit] += 1
        return refusal

    def _refusal(self, ip: str) -> Refusal | None:
        if not (self.lifecycle.accepting or self.drainer.accepting):
            phase = self.lifecycle.phase.value
            return Refusal(503, f"node is {phase}", retry_after=1, limit=phase)
        if self.rebalancer is not None and self.rebalancer.shedding:
            # Above the fleet mean: new clients, the shed ones first, go elsewhere.
            return Refusal(503, "node is rebalancing", 1, "rebalancing")
        refusal = self.admission.check(ip)
        if refusal is not None:
            return refusal
        if not self.fleet.take_connection():
            self.stats.limit_hits["fleet_connection_rate"] += 1
            wait = max(1, math.ceil(self.fleet.retry_after()))
            return Refusal(503, "fleet connection rate limit", wait, "fleet_connection_rate")
        return None

    def not_ready_reason(self) -> str | None:
        """Why ``/readyz`` fails, or None when the node should get traffic."""
        if self.lifecycle.phase is not Phase.READY:
            return f"node is {self.lifecycle.phase.value}"
        if self.admission.at_capacity:
            return f"node at its connection limit ({self.admission.connection_limit})"
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
        try:
            await self.fleet.start()
        except BrokerError:
            await self.broker.close()
            raise
        self._http = InternalServer(self)
        self.addresses.internal = await self._http.start(server.internal_host, server.internal_port)
        self._ws = WebSocketServer(
            self._context(loop),
            self.gate,
            admission=self.admission,
            proxies=TrustedProxies(server.trusted_proxies),
        )
        self.addresses.public = await self._ws.start(server.host, server.port)
        self.lifecycle.advance(Phase.READY)
        await self.fleet.beat()  # the registry shows the node ready at once
        if self.rebalancer is not None:
            self.rebalancer.start()
        log.info(
            "node ready",
            extra={
                "event": "ready",
                "node": self.name,
                "uid": self.uid,
                "public": _fmt(self.addresses.public),
                "internal": _fmt(self.addresses.internal),
                "broker": shown_url(self.settings.broker.url),
            },
        )

    async def drain(self) -> None:
        """Drain as ``drain.*`` says (SIGTERM); safe to call more than once."""
        await self._shutdown(DisconnectCode.SHUTDOWN, urgent=False)

    async def stop(self, disconnect: Disconnect = DisconnectCode.SHUTDOWN) -> None:
        """Close everything in order at once; safe to call more than once."""
        await self._shutdown(disconnect, urgent=True)

    def hurry(self) -> None:
        """Cut a drain short (a second signal): close what is left now."""
        self.drainer.hurry()

    async def _shutdown(self, disconnect: Disconnect, *, urgent: bool) -> None:
        if self._stopping:
            if urgent:
                self.hurry()
            await self._stopped.wait()
            return
        self._stopping = True
        self.lifecycle.advance(Phase.DRAINING)
        if not urgent:
            # The registry shows the drain at once: other nodes stop counting
            # this one in their rebalancing mean before its clients arrive.
            self._announce = asyncio.get_running_loop().create_task(self.fleet.beat())
        log.info(
            "draining",
            extra={"event": "draining", "node": self.name, "connections": len(self.registry)},
        )
        try:
            if self.rebalancer is not None:
                await self.rebalancer.stop()
            await self.drainer.run(disconnect, urgent=urgent)
        finally:
            await self._finish()  # a no-op when the drain got that far
            self._stopped.set()

    def _open_sessions(self) -> list[ClientSession]:
        return self._ws.sessions() if self._ws is not None else list(self.registry)

    async def _finish(self) -> None:
        """After the connections: stop listening, leave the fleet, broker, HTTP last."""
        if self.lifecycle.phase is Phase.STOPPED:
            return
        try:
            if self._announce is not None:
                await self._announce  # before leaving: it must not re-register the node
            if self._ws is not None:
                self._ws.stop_listening()
            await self.fleet.stop()
            await self.broker.close()
            if self._timers is not None:
                self._timers.close()  # the connections are closed: nothing left to time
        finally:
            if self._http is not None:
                await self._http.stop()
            self.lifecycle.advance(Phase.STOPPED)
            log.info("node stopped", extra={"event": "stopped", "node": self.name})

    # -- what /status and the info API report ---------------------------------------------

    def describe(self) -> NodeInfo:
        """This node as the fleet registry lists it."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return NodeInfo(
            uid=self.uid,
            name=self.name,
            version=__version__,
            phase=self.lifecycle.phase.value,
            public=self._advertised(self.addresses.public),
            internal=self._advertised(self.addresses.internal),
            num_clients=len(self.registry),
            connection_limit=self.admission.connection_limit,
            num_users=self.registry.num_users,
            num_subs=self.hub.num_subscriptions,
            num_channels=self.hub.num_channels,
            cpu=round(usage.ru_utime + usage.ru_stime, 3),
            rss=_rss_bytes(),
            started_at=self.started_at,
            updated_at=time.time(),
        )

    def _advertised(self, addrs: list[tuple[str, int]]) -> tuple[str, ...]:
        host = self.settings.server.advertise_host
        out = []
        for bound, port in addrs:
            shown = host or (socket.gethostname() if bound in ("0.0.0.0", "::", "") else bound)
            out.append(f"[{shown}]:{port}" if ":" in shown else f"{shown}:{port}")
        return tuple(out)

    def fleet_view(self, nodes: list[NodeInfo]) -> list[dict[str, object]]:
        """The fleet as ``/status`` and the info API list it; this node's entry is fresh."""
        now = time.time()
        others = [n for n in nodes if n.uid != self.uid]
        return [_node_entry(n, now) for n in [self.describe(), *others]]

    def snapshot(self) -> dict[str, object]:
        """This node, as ``/status`` and the fleet listings show it."""
        return _node_entry(self.describe(), time.time())


def _node_entry(info: NodeInfo, now: float) -> dict[str, object]:
    return {
        "uid": info.uid,
        "name": info.name,
        "version": info.version,
        "phase": info.phase,
        "public": list(info.public),
        "internal": list(info.internal),
        "num_clients": info.num_clients,
        "num_users": info.num_users,
        "num_subs": info.num_subs,
        "num_channels": info.num_channels,
        "uptime": int(now - info.started_at),
        "process": {"cpu": info.cpu, "rss": info.rss},
        "seen_ago": round(max(0.0, now - info.updated_at), 3),
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
