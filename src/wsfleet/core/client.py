"""One client connection's protocol session: commands in, replies and pushes out.

The session is driven by the transport (frames in, "writable again", "gone")
and talks to the node through :class:`SessionContext`. It never touches a
socket: it writes encoded bytes to its :class:`~wsfleet.core.outbox.Outbox`
and asks its :class:`Transport` to close.

Commands of one connection are handled in order, one at a time, by a task
that exists only while commands are pending, so an idle connection costs no
task. An idle connection is held by many thousands at once on a node, so what
it keeps is kept small: slotted objects, the command queue and the close-time
task set made only when used, and its recurring timers (ping, pong, connect
deadline, presence refresh) entries in the node's shared
:class:`~wsfleet.core.timers.TimerQueue` rather than event-loop timers of its
own (docs/topics/performance.md). States::

    CONNECTING --connect ok--> CONNECTED --close--> CLOSED
        \\--------------------- close --------------------/
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from wsfleet.auth import ConnectClaims, TokenExpired, TokenInvalid, TokenVerifier
from wsfleet.brokers.base import Broker, BrokerError, PresenceManager
from wsfleet.core.channel_commands import ChannelCommands
from wsfleet.core.channels import ChannelRules
from wsfleet.core.hub import Hub, Subscription
from wsfleet.core.limits import TokenBucket
from wsfleet.core.outbox import Outbox
from wsfleet.core.registry import ConnectionRegistry
from wsfleet.core.stats import NodeStats
from wsfleet.core.subscriptions import SubscriptionFlow
from wsfleet.core.timers import Timer, TimerQueue
from wsfleet.core.user_limit import UserConnections
from wsfleet.protocol.codec import Codec
from wsfleet.protocol.codes import (
    UNSUBSCRIBE_REASONS,
    Disconnect,
    DisconnectCode,
    ErrorCode,
    ProtocolDisconnect,
    ProtocolError,
    UnsubscribeCode,
)
from wsfleet.protocol.messages import (
    COMMAND_METHODS,
    EMPTY,
    ClientInfo,
    Command,
    ConnectRequest,
    ConnectResult,
    Error,
    PingResult,
    Push,
    RefreshRequest,
    RefreshResult,
    Reply,
    SubRefreshRequest,
    SubRefreshResult,
    SubscribeRequest,
    Unsubscribe,
    raw,
)
from wsfleet.protocol.messages import Subscribe as SubscribePush
from wsfleet.settings import ClientSettings

log = logging.getLogger("wsfleet.client")


class Transport(Protocol):
    """What a session needs from its WebSocket."""

    def send_frame(self, frame: bytes) -> None:
        """Write one data frame (text or binary, as the codec says)."""

    def close(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and ``reason`` and drop the connection."""


class ConnState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionContext:
    """Everything of the node a session uses; built once by the node."""

    node_name: str
    version: str
    client: ClientSettings
    rules: ChannelRules
    broker: Broker
    presence: PresenceManager
    hub: Hub
    tokens: TokenVerifier
    allow_anonymous: bool
    stats: NodeStats
    registry: ConnectionRegistry[ClientSession]
    users: UserConnections
    loop: asyncio.AbstractEventLoop
    clock: Callable[[], float]
    """Wall clock, seconds (token expiry)."""
    monotonic: Callable[[], float]
    """Monotonic clock, seconds (rates)."""
    timers: SessionTimers
    """The fixed-delay timers of every session of the node."""
    call_soon: Callable[[Callable[[], None]], object] = field(init=False, repr=False)
    """``loop.call_soon``, bound once: each outbox holds it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "call_soon", self.loop.call_soon)


class SessionTimers:
    """The timers every session restarts with the same delay, one queue each.

    Shared by the sessions of one node (see :mod:`wsfleet.core.timers`); built
    from the client settings on the node's loop.
    """

    __slots__ = ("connect", "ping", "pong", "presence")

    def __init__(self, loop: asyncio.AbstractEventLoop, opts: ClientSettings) -> None:
        self.connect = TimerQueue(loop, opts.connect_timeout, ClientSession._connect_timeout)
        self.ping = TimerQueue(loop, opts.ping_interval, ClientSession._send_ping)
        self.pong = TimerQueue(loop, opts.pong_timeout, ClientSession._pong_missing)
        self.presence = TimerQueue(
            loop, opts.presence_update_interval, ClientSession._refresh_presence
        )

    def close(self) -> None:
        for queue in (self.connect, self.ping, self.pong, self.presence):
            queue.close()


class ClientSession:
    """The server side of one client connection."""

    __slots__ = (
        "_bucket",
        "_closing_tasks",
        "_connect_timer",
        "_errors_in_row",
        "_pending",
        "_ping_timer",
        "_pong_timer",
        "_presence_timer",
        "_rate_rejections",
        "_timers",
        "_transport",
        "_worker",
        "client_id",
        "codec",
        "conn_info",
        "ctx",
        "expire_at",
        "outbox",
        "remote",
        "state",
        "subs",
        "user",
    )

    def __init__(
        self, ctx: SessionContext, transport: Transport, codec: Codec, *, remote: str = ""
    ) -> None:
        self.ctx = ctx
        self.codec = codec
        self.remote = remote
        self.client_id = str(uuid.uuid4())
        self.user = ""
        self.conn_info = EMPTY
        self.state = ConnState.CONNECTING
        self.expire_at: float | None = None
        self._transport = transport
        opts = ctx.client
        self.outbox = Outbox(
            send=transport.send_frame,
            separator=codec.separator,
            max_bytes=opts.outbox_max_bytes,
            max_frame_bytes=opts.max_frame_bytes,
            on_overflow=self._on_overflow,
            call_soon=ctx.call_soon,
            stats=ctx.stats,
        )
        self.subs = SubscriptionFlow(self)
        self._pending: deque[Command] | None = None
        """Commands waiting for the worker; made on the first, dropped when drained."""
        self._worker: asyncio.Task[None] | None = None
        self._bucket = TokenBucket(
            rate=opts.command_rate_limit, burst=opts.command_burst, clock=ctx.monotonic
        )
        self._rate_rejections = 0
        self._errors_in_row = 0
        self._timers: dict[str, asyncio.TimerHandle] | None = None
        """Named timers of their own delay (token expiry, lifetime); made on the first."""
        self._ping_timer: Timer[ClientSession] | None = None
        self._pong_timer: Timer[ClientSession] | None = None
        """Set while a ping waits for its pong."""
        self._presence_timer: Timer[ClientSession] | None = None
        self._closing_tasks: set[asyncio.Task[None]] | None = None
        self._connect_timer: Timer[ClientSession] | None = ctx.timers.connect.start(self)

    # -- identity ----------------------------------------------------------------

    def client_info(self, chan_info: bytes = b"") -> ClientInfo:
        return ClientInfo(
            user=self.user,
            client=self.client_id,
            conn_info=self.conn_info,
            chan_info=raw(chan_info),
        )

    def log_extra(self, **kw: object) -> dict[str, object]:
        return {"client": self.client_id, "user": self.user, "remote": self.remote, **kw}

    # -- transport events --------------------------------------------------------

    def on_frame(self, frame: bytes) -> None:
        """A data frame arrived from the client."""
        if self.state is ConnState.CLOSED:
            return
        stats = self.ctx.stats
        stats.messages_in += 1
        stats.bytes_in += len(frame)
        try:
            commands = self.codec.decode_commands(frame)
        except ProtocolDisconnect as exc:
            log.info("bad frame: %s", exc.detail, extra=self.log_extra(event="bad_frame"))
            self.close(exc.disconnect)
            return
        for cmd in commands:
            if not self._accept(cmd):
                return

    def on_wrong_frame_type(self) -> None:
        """A binary frame on a JSON connection, or text on a Protobuf one."""
        log.info("unexpected frame type", extra=self.log_extra(event="bad_frame"))
        self.close(DisconnectCode.BAD_REQUEST)

    def on_transport_closed(self) -> None:
        """The connection is gone (closed by the peer, or after our close)."""
        self._enter_closed()

    def pause_writing(self) -> None:
        self.outbox.pause()

    def resume_writing(self) -> None:
        self.outbox.resume()

    def send_encoded(self, data: bytes) -> None:
        self.outbox.push(data)

    # -- command intake ------------------------------------------------------------

    def _accept(self, cmd: Command) -> bool:
        """Queue one decoded command; False when the connection closed."""
        if cmd.id == 0 and _is_empty(cmd):
            pong = self._pong_timer  # the client's pong
            if pong is not None:
                pong.cancel()
                self._pong_timer = None
            return True
        if not self._bucket.take():
            return self._rate_limited(cmd)
        pending = self._pending
        if pending is None:
            pending = self._pending = deque()
        elif len(pending) >= self.ctx.client.max_pending_commands:
            self.ctx.stats.limit_hits["pending_commands"] += 1
            self.close(DisconnectCode.TOO_MANY_REQUESTS)
            return False
        pending.append(cmd)
        if self._worker is None:
            self._worker = self.ctx.loop.create_task(self._work())
        return True

    def _rate_limited(self, cmd: Command) -> bool:
        opts = self.ctx.client
        self.ctx.stats.limit_hits["command_rate"] += 1
        self._rate_rejections += 1
        if opts.command_rate_disconnect_after and (
            self._rate_rejections >= opts.command_rate_disconnect_after
        ):
            log.warning("command flood", extra=self.log_extra(event="rate_limit_disconnect"))
            self.close(DisconnectCode.TOO_MANY_REQUESTS)
            return False
        if cmd.id:
            self._error_reply(cmd.id, ProtocolError(ErrorCode.TOO_MANY_REQUESTS))
        return True

    async def _work(self) -> None:
        try:
            while (pending := self._pending) and self.state is not ConnState.CLOSED:
                await self._run(pending.popleft())
        finally:
            self._worker = None
            if not self._pending:
                self._pending = None  # an idle connection keeps no queue

    async def _run(self, cmd: Command) -> None:
        try:
            await self._dispatch(cmd)
            self._errors_in_row = 0
        except ProtocolError as exc:
            self._error_reply(cmd.id, exc)
        except ProtocolDisconnect as exc:
            log.info("closing: %s", exc.detail, extra=self.log_extra(event="protocol_disconnect"))
            self.close(exc.disconnect)
        except BrokerError as exc:
            log.warning("broker error: %s", exc, extra=self.log_extra(event="broker_error"))
            self._error_reply(
                cmd.id, ProtocolError(ErrorCode.INTERNAL, "broker unavailable", temporary=True)
            )
        except Exception:
            log.exception("command failed", extra=self.log_extra(event="internal_error"))
            self._error_reply(cmd.id, ProtocolError(ErrorCode.INTERNAL))

    def _error_reply(self, cmd_id: int, exc: ProtocolError) -> None:
        stats = self.ctx.stats
        stats.errors[int(exc.code)] += 1
        if cmd_id and self.state is not ConnState.CLOSED:
            err = Error(code=int(exc.code), message=exc.message, temporary=exc.temporary)
            self.reply(Reply(id=cmd_id, error=err))
        self._errors_in_row += 1
        limit = self.ctx.client.max_connection_command_errors
        if limit and self._errors_in_row >= limit:
            self.close(DisconnectCode.TOO_MANY_ERRORS)

    def reply(self, reply: Reply) -> None:
        self.outbox.push(self.codec.encode_reply(reply))

    async def _dispatch(self, cmd: Command) -> None:
        if cmd.connect is not None:
            self.ctx.stats.commands["connect"] += 1
            await self._connect(cmd.id, cmd.connect)
            return
        if self.state is not ConnState.CONNECTED:
            raise ProtocolDisconnect(DisconnectCode.BAD_REQUEST, "command before connect")
        method, handler = self._handler_for(cmd)
        self.ctx.stats.commands[method] += 1
        await handler(cmd)

    def _handler_for(self, cmd: Command) -> tuple[str, Callable[[Command], Awaitable[None]]]:
        if cmd.id == 0 and cmd.send is None:
            raise ProtocolDisconnect(DisconnectCode.BAD_REQUEST, "command without id")
        for method, route in _ROUTES.items():
            if getattr(cmd, method) is not None:
                return method, route(self)
        raise ProtocolDisconnect(DisconnectCode.BAD_REQUEST, "unknown command")

    # -- connect -----------------------------------------------------------------------

    async def _connect(self, cmd_id: int, req: ConnectRequest) -> None:
        if self.state is not ConnState.CONNECTING:
            raise ProtocolDisconnect(DisconnectCode.BAD_REQUEST, "already connected")
        if not cmd_id:
            raise ProtocolDisconnect(DisconnectCode.BAD_REQUEST, "connect without id")
        claims = self._authenticate(req.token)
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        user = claims.user if claims else ""
        await self.ctx.users.admit(user)
        if self.state is not ConnState.CONNECTING:
            # Closed while the fleet was asked: give the claimed slot back.
            self.ctx.users.changed(user)
            return
        self.user = user
        if claims and claims.info:
            self.conn_info = raw(claims.info)
        if claims and claims.expire_at is not None:
            self.expire_at = float(claims.expire_at)
        self.state = ConnState.CONNECTED
        self.ctx.registry.add(self)
        self.ctx.stats.connections_accepted += 1
        try:
            subs = await self.subs.server_side_on_connect(claims, req.subs or {})
        except BaseException:
            self._undo_connect()
            self.ctx.users.changed(self.user)
            raise
        result = ConnectResult(
            client=self.client_id,
            version=self.ctx.version,
            ping=int(self.ctx.client.ping_interval),
            pong=True,
            node=self.ctx.node_name,
            subs={ch: res for ch, (_, res) in subs.items()} or None,
        )
        if self.expire_at is not None:
            result.expires = True
            result.ttl = self._ttl(self.expire_at)
            self._schedule_expiry()
        self.reply(Reply(id=cmd_id, connect=result))
        for sub, _ in subs.values():
            self.subs.activate(sub)
        self._ping_timer = self.ctx.timers.ping.start(self)
        self._schedule_lifetime()
        self.subs.schedule_presence_refresh()
        log.info("connected", extra=self.log_extra(event="connected", codec=self.codec.name))

    def _undo_connect(self) -> None:
        self.ctx.registry.remove(self)
        self.state = ConnState.CONNECTING

    def _authenticate(self, token: str) -> ConnectClaims | None:
        if not token:
            if self.ctx.allow_anonymous:
                return None
            raise ProtocolDisconnect(DisconnectCode.INVALID_TOKEN, "token required")
        try:
            return self.ctx.tokens.verify_connection(token)
        except TokenExpired as exc:
            raise ProtocolError(ErrorCode.TOKEN_EXPIRED) from exc
        except TokenInvalid as exc:
            raise ProtocolDisconnect(DisconnectCode.INVALID_TOKEN, str(exc)) from exc

    def _ttl(self, expire_at: float) -> int:
        return max(1, int(expire_at - self.ctx.clock()))

    # -- refresh and expiry ----------------------------------------------------------------

    async def _refresh_command(self, cmd: Command) -> None:
        req = cmd.refresh or RefreshRequest()
        if not req.token:
            raise ProtocolDisconnect(DisconnectCode.BAD_REQUEST, "refresh without token")
        try:
            claims = self.ctx.tokens.verify_connection(req.token)
        except TokenExpired as exc:
            raise ProtocolError(ErrorCode.TOKEN_EXPIRED) from exc
        except TokenInvalid as exc:
            raise ProtocolDisconnect(DisconnectCode.INVALID_TOKEN, str(exc)) from exc
        if claims.user != self.user:
            raise ProtocolDisconnect(DisconnectCode.INVALID_TOKEN, "refresh for another user")
        self.expire_at = float(claims.expire_at) if claims.expire_at is not None else None
        result = RefreshResult(client=self.client_id, version=self.ctx.version)
        if self.expire_at is not None:
            result.expires = True
            result.ttl = self._ttl(self.expire_at)
        self._schedule_expiry()
        self.reply(Reply(id=cmd.id, refresh=result))

    def _schedule_expiry(self) -> None:
        self._cancel("expire")
        if self.expire_at is None:
            return
        delay = self.expire_at - self.ctx.clock() + self.ctx.client.expired_close_delay
        self._schedule("expire", max(delay, 0.0), self._check_expired)

    def _check_expired(self) -> None:
        if self.expire_at is not None and self.ctx.clock() >= self.expire_at:
            self.close(DisconnectCode.EXPIRED)

    async def _sub_refresh_command(self, cmd: Command) -> None:
        req = cmd.sub_refresh or SubRefreshRequest()
        ttl = self.subs.refresh(req)
        result = SubRefreshResult(expires=ttl is not None, ttl=ttl or 0)
        self.reply(Reply(id=cmd.id, sub_refresh=result))

    # -- small commands ----------------------------------------------------------------

    async def _ping_command(self, cmd: Command) -> None:
        self.reply(Reply(id=cmd.id, ping=PingResult()))

    async def _send_command(self, cmd: Command) -> None:
        """Drop an asynchronous message: it needs an application handler, and none exists.

        The protocol gives ``send`` no reply; the command counter still counts it.
        """

    async def _rpc_command(self, cmd: Command) -> None:
        raise ProtocolError(ErrorCode.NOT_AVAILABLE, "rpc is not available: no rpc handlers")

    # -- server pings -----------------------------------------------------------------

    def _send_ping(self) -> None:
        self._ping_timer = None
        if self.state is not ConnState.CONNECTED:
            return
        self.outbox.push(self.codec.encode_reply(_PING))
        timers = self.ctx.timers
        if self._pong_timer is None:
            self._pong_timer = timers.pong.start(self)
        self._ping_timer = timers.ping.start(self)

    def _pong_missing(self) -> None:
        self._pong_timer = None
        log.info("no pong", extra=self.log_extra(event="no_pong"))
        self.ctx.stats.limit_hits["pong_timeout"] += 1
        self.close(DisconnectCode.NO_PONG)

    def _schedule_lifetime(self) -> None:
        opts = self.ctx.client
        if opts.max_connection_lifetime <= 0:
            return
        # Shortened at random so connections made together do not all leave together.
        cut = opts.connection_lifetime_jitter * random.random()
        self._schedule("lifetime", opts.max_connection_lifetime * (1 - cut), self._lifetime_over)

    def _lifetime_over(self) -> None:
        log.info("connection lifetime over", extra=self.log_extra(event="lifetime"))
        self.ctx.stats.limit_hits["connection_lifetime"] += 1
        self.close(DisconnectCode.LIFETIME)

    def _connect_timeout(self) -> None:
        self._connect_timer = None
        if self.state is ConnState.CONNECTING:
            self.close(DisconnectCode.STALE)

    # -- server-side actions (server API) ------------------------------------------------

    async def server_subscribe(self, channel: str) -> None:
        """Subscribe the connection to ``channel`` and tell it with a subscribe push."""
        sub, res = await self.subs.subscribe(SubscribeRequest(channel=channel), server_side=True)
        push = SubscribePush(
            recoverable=res.recoverable,
            epoch=res.epoch,
            offset=res.offset,
            positioned=res.positioned,
            data=res.data,
        )
        self.reply(Reply(push=Push(channel=channel, subscribe=push)))
        self.subs.activate(sub)

    async def server_unsubscribe(
        self, channel: str, code: UnsubscribeCode = UnsubscribeCode.SERVER
    ) -> None:
        """Drop a subscription and tell the client with an unsubscribe push."""
        if await self.subs.unsubscribe(channel):
            self.push_unsubscribe(channel, code)

    def push_unsubscribe(self, channel: str, code: UnsubscribeCode) -> None:
        push = Unsubscribe(code=int(code), reason=UNSUBSCRIBE_REASONS[code])
        self.reply(Reply(push=Push(channel=channel, unsubscribe=push)))

    def on_insufficient_state(self, sub: Subscription) -> None:
        """The hub saw a gap: make the client resync that channel from history."""
        self.ctx.stats.gaps_detected += 1
        self.subs.resync(sub)

    # -- closing ------------------------------------------------------------------------

    def _on_overflow(self) -> None:
        log.warning("slow consumer", extra=self.log_extra(event="slow_consumer"))
        self.ctx.stats.limit_hits["slow_consumer"] += 1
        self._close_now(DisconnectCode.SLOW)

    @property
    def closed(self) -> bool:
        return self.state is ConnState.CLOSED

    def close(self, disconnect: Disconnect) -> None:
        """Close with ``disconnect``: queued replies go first, then the close frame."""
        if self.state is ConnState.CLOSED:
            return
        self.outbox.flush()
        self._close_now(disconnect)

    def _close_now(self, disconnect: Disconnect) -> None:
        if self.state is ConnState.CLOSED:
            return
        self.ctx.stats.disconnects[disconnect.code] += 1
        self.outbox.close()
        self._transport.close(disconnect.code, disconnect.reason)
        self._enter_closed()

    def _enter_closed(self) -> None:
        """The one transition to CLOSED, whoever closed: count it, release everything."""
        if self.state is ConnState.CLOSED:
            return
        was_connected = self.state is ConnState.CONNECTED
        if was_connected:
            self.ctx.stats.connections_closed += 1
        self.state = ConnState.CLOSED
        self._cancel_all_timers()
        self._pending = None
        if self._worker is not None and self._worker is not asyncio.current_task():
            self._worker.cancel()
        self.ctx.registry.remove(self)
        if was_connected:
            self.ctx.users.changed(self.user)
        self._keep(self.ctx.loop.create_task(self.subs.release_all()))

    # -- timers ----------------------------------------------------------------------------

    def _cancel_all_timers(self) -> None:
        for timer in (self._connect_timer, self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self._connect_timer = self._ping_timer = self._pong_timer = None
        self._stop_presence_refresh()
        if self._timers is not None:
            for handle in self._timers.values():
                handle.cancel()
            self._timers = None

    def restart_presence_refresh(self) -> None:
        """Refresh this connection's presence ``presence_update_interval`` from now."""
        self._stop_presence_refresh()
        if self.state is not ConnState.CLOSED:
            self._presence_timer = self.ctx.timers.presence.start(self)

    def _stop_presence_refresh(self) -> None:
        if self._presence_timer is not None:
            self._presence_timer.cancel()
            self._presence_timer = None

    def _refresh_presence(self) -> None:
        self._presence_timer = None
        self.subs.refresh_presence()

    def _schedule(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        timers = self._timers
        if timers is None:
            timers = self._timers = {}
        old = timers.get(name)
        if old is not None:
            old.cancel()
        timers[name] = self.ctx.loop.call_later(delay, callback)

    def _cancel(self, name: str) -> None:
        handle = self._timers.pop(name, None) if self._timers is not None else None
        if handle is not None:
            handle.cancel()

    def schedule(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        """A named one-shot timer that dies with the connection."""
        self._schedule(name, delay, callback)

    def cancel(self, name: str) -> None:
        self._cancel(name)

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run a background coroutine tied to this connection's life."""

        async def run() -> None:
            try:
                await coro
            except (BrokerError, ProtocolError) as exc:
                log.warning("background: %s", exc, extra=self.log_extra(event="background"))

        self._keep(self.ctx.loop.create_task(run()))

    def _keep(self, task: asyncio.Task[None]) -> None:
        # A strong reference until done: the loop holds tasks only weakly.
        tasks = self._closing_tasks
        if tasks is None:
            tasks = self._closing_tasks = set()
        tasks.add(task)
        task.add_done_callback(tasks.discard)


_PING = Reply()

_Handler = Callable[[Command], Awaitable[None]]

# Which handler serves each request field (connect is handled before routing).
# Built once, not per command. ChannelCommands holds nothing but the session,
# so it is made per command rather than kept by every idle connection.
_ROUTES: dict[str, Callable[[ClientSession], _Handler]] = {
    "subscribe": lambda s: s.subs.handle_subscribe,
    "unsubscribe": lambda s: s.subs.handle_unsubscribe,
    "publish": lambda s: ChannelCommands(s).handle_publish,
    "presence": lambda s: ChannelCommands(s).handle_presence,
    "presence_stats": lambda s: ChannelCommands(s).handle_presence_stats,
    "history": lambda s: ChannelCommands(s).handle_history,
    "ping": lambda s: s._ping_command,
    "send": lambda s: s._send_command,
    "rpc": lambda s: s._rpc_command,
    "refresh": lambda s: s._refresh_command,
    "sub_refresh": lambda s: s._sub_refresh_command,
}


def _is_empty(cmd: Command) -> bool:
    return all(getattr(cmd, name) is None for name in COMMAND_METHODS)


__all__ = ["ClientSession", "ConnState", "SessionContext", "Transport"]
