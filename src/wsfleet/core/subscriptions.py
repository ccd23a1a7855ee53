"""A connection's subscriptions: subscribe with recovery, unsubscribe, expiry, presence.

Subscribing follows one order, so that nothing published meanwhile is lost
or delivered twice:

1. register with the hub (the node subscribes to the channel in the broker if
   it is the first local subscriber); live publications are buffered from now;
2. read the stream position (and, when recovering, the missed publications);
3. send the subscribe reply;
4. replay the buffer, dropping what the reply already covered, and go live.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from msgspec import Raw

from wsfleet.auth import ConnectClaims, SubscribeOptionsClaim, TokenExpired, TokenInvalid
from wsfleet.brokers.base import BrokerError, HistoryQuery
from wsfleet.core.channels import ChannelOptions, ChannelRules
from wsfleet.core.delta import recovered_with_deltas
from wsfleet.core.hub import Subscription, SubState, deliver
from wsfleet.core.recovery import recover
from wsfleet.core.tags_filter import FilterError, FilterTooLarge, TagsFilter, compile_filter
from wsfleet.protocol.codes import (
    DisconnectCode,
    ErrorCode,
    ProtocolDisconnect,
    ProtocolError,
    UnsubscribeCode,
)
from wsfleet.protocol.messages import (
    EMPTY,
    Command,
    Reply,
    StreamPosition,
    SubRefreshRequest,
    SubscribeRequest,
    SubscribeResult,
    UnsubscribeRequest,
    UnsubscribeResult,
    raw,
)

if TYPE_CHECKING:
    from wsfleet.core.client import ClientSession

log = logging.getLogger("wsfleet.client")

FLAG_REJECT_UNRECOVERED = 2
"""Subscribe flag: answer error 112 instead of ``recovered: false``."""

SUPPORTED_DELTAS = frozenset({"fossil"})


@dataclass(slots=True)
class ChannelEntry:
    """What a connection holds for one subscribed channel."""

    sub: Subscription
    options: ChannelOptions
    server_side: bool
    chan_info: bytes
    expire_at: float | None


class SubscriptionFlow:
    """The subscriptions of one :class:`~wsfleet.core.client.ClientSession`."""

    __slots__ = ("entries", "session")

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.entries: dict[str, ChannelEntry] = {}

    # -- commands -----------------------------------------------------------------

    async def handle_subscribe(self, cmd: Command) -> None:
        req = cmd.subscribe or SubscribeRequest()
        sub, result = await self.subscribe(req, server_side=False)
        self.session.reply(Reply(id=cmd.id, subscribe=result))
        self.activate(sub)

    async def handle_unsubscribe(self, cmd: Command) -> None:
        req = cmd.unsubscribe or UnsubscribeRequest()
        if not req.channel:
            raise ProtocolDisconnect(DisconnectCode.BAD_REQUEST, "unsubscribe without channel")
        await self.unsubscribe(req.channel)
        self.session.reply(Reply(id=cmd.id, unsubscribe=UnsubscribeResult()))

    # -- subscribe ------------------------------------------------------------------

    async def subscribe(
        self,
        req: SubscribeRequest,
        *,
        server_side: bool,
        claim: SubscribeOptionsClaim | None = None,
    ) -> tuple[Subscription, SubscribeResult]:
        """Subscribe; the caller sends the result, then calls :meth:`activate`."""
        session = self.session
        ctx = session.ctx
        channel = req.channel
        if not channel:
            raise ProtocolDisconnect(DisconnectCode.BAD_REQUEST, "subscribe without channel")
        if req.delta and req.delta not in SUPPORTED_DELTAS:
            raise ProtocolDisconnect(DisconnectCode.BAD_REQUEST, f"unknown delta {req.delta!r}")
        opts = ctx.rules.resolve(channel)
        tags_filter = None if server_side else self._tags_filter(req, opts)
        if channel in self.entries:
            raise ProtocolError(ErrorCode.ALREADY_SUBSCRIBED)
        limit = ctx.client.max_subscriptions
        if limit and len(self.entries) >= limit:
            ctx.stats.limit_hits["subscriptions"] += 1
            raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, "too many subscriptions")
        if server_side:
            chan_info = (claim.info or b"") if claim else b""
            data = raw(claim.data or b"") if claim else EMPTY
            expire_at = None
        else:
            chan_info, expire_at, data = self._authorize(req, opts)
        ns = opts.options
        history = opts.history_enabled
        recoverable = history and (ns.force_recovery or req.recoverable or server_side)
        positioned = history and (recoverable or req.positioned)
        sub = Subscription(
            session,
            channel,
            join_leave=ns.force_push_join_leave or (ns.join_leave and req.join_leave),
            # Config keeps tags filters and deltas apart; a filtered subscriber has no base.
            delta=bool(req.delta) and req.delta in ns.allowed_delta_types and tags_filter is None,
            positioned=positioned,
            tags_filter=tags_filter,
        )
        entry = ChannelEntry(sub, opts, server_side, chan_info, expire_at)
        self.entries[channel] = entry
        try:
            await ctx.hub.add(sub)
            result = await self._position(req, opts, sub, recoverable=recoverable)
            await self._announce(entry)
        except BaseException:
            if self.entries.get(channel) is entry:
                del self.entries[channel]
            await asyncio.shield(self._quiet_release(entry, announce=False))
            raise
        result.data = data
        result.delta = sub.delta
        if expire_at is not None:
            result.expires = True
            result.ttl = max(1, int(expire_at - ctx.clock()))
            self._schedule_expiry(entry)
        return sub, result

    def _tags_filter(self, req: SubscribeRequest, opts: ChannelOptions) -> TagsFilter | None:
        """The compiled tags filter of a client-side subscribe; None without one."""
        if req.tf is None:
            return None
        if not opts.options.allow_tags_filter:
            raise ProtocolDisconnect(
                DisconnectCode.BAD_REQUEST,
                f"tags filter not allowed in channel {req.channel!r} (allow_tags_filter)",
            )
        ctx = self.session.ctx
        try:
            return compile_filter(req.tf, max_nodes=ctx.client.tags_filter_max_nodes)
        except FilterError as exc:
            if isinstance(exc, FilterTooLarge):
                ctx.stats.limit_hits["tags_filter_nodes"] += 1
            raise ProtocolDisconnect(
                DisconnectCode.BAD_REQUEST, f"bad tags filter: {exc}"
            ) from None

    def _authorize(
        self, req: SubscribeRequest, opts: ChannelOptions
    ) -> tuple[bytes, float | None, Raw]:
        """Check a client-side subscribe; return (chan_info, expire_at, data)."""
        session = self.session
        ns = opts.options
        user = session.user
        if ns.allow_user_limited_channels:
            users = ChannelRules.allowed_users(req.channel)
            if users is not None:
                if not user or user not in users:
                    raise ProtocolError(ErrorCode.PERMISSION_DENIED)
                return b"", None, EMPTY
        if req.token:
            try:
                claims = session.ctx.tokens.verify_subscription(
                    req.token, user=user, channel=req.channel
                )
            except TokenExpired as exc:
                raise ProtocolError(ErrorCode.TOKEN_EXPIRED) from exc
            except TokenInvalid as exc:
                raise ProtocolError(ErrorCode.PERMISSION_DENIED, str(exc)) from exc
            expire_at = float(claims.expire_at) if claims.expire_at is not None else None
            return claims.info or b"", expire_at, raw(claims.data or b"")
        allowed = ns.allow_subscribe_for_client if user else ns.allow_subscribe_for_anonymous
        if not allowed:
            raise ProtocolError(ErrorCode.PERMISSION_DENIED)
        return b"", None, EMPTY

    async def _position(
        self, req: SubscribeRequest, opts: ChannelOptions, sub: Subscription, *, recoverable: bool
    ) -> SubscribeResult:
        if not sub.positioned:
            return SubscribeResult()
        ctx = self.session.ctx
        max_rec = ctx.client.recovery_max_publication_limit
        recovering = recoverable and req.recover
        if recovering:
            since = StreamPosition(offset=req.offset, epoch=req.epoch)
            query = HistoryQuery(since=since, limit=max_rec + 1)
            page = await ctx.broker.history(sub.channel, query, opts.history)
            outcome = recover(since, page.position, page.publications, max_publications=max_rec)
            if not outcome.recovered and req.flag & FLAG_REJECT_UNRECOVERED:
                raise ProtocolError(ErrorCode.UNRECOVERABLE_POSITION)
            recovered, pubs = outcome.recovered, outcome.publications
        else:
            page = await ctx.broker.history(sub.channel, HistoryQuery(limit=0), opts.history)
            recovered, pubs = False, []
        top = page.position
        sub.offset, sub.epoch = top.offset, top.epoch
        if sub.tags_filter is not None:
            # Recovered still means nothing missed: what the filter leaves out is not due.
            match = sub.tags_filter
            pubs = [pub for pub in pubs if match(pub.tags)]
        if sub.delta and pubs:
            pubs = recovered_with_deltas(pubs, binary=self.session.codec.binary)
            sub.delta_base = pubs[-1].offset
        return SubscribeResult(
            recoverable=recoverable,
            positioned=True,
            epoch=top.epoch,
            offset=top.offset,
            recovered=recovered,
            was_recovering=recovering,
            publications=pubs or None,
        )

    async def _announce(self, entry: ChannelEntry) -> None:
        session = self.session
        ctx = session.ctx
        ns = entry.options.options
        info = session.client_info(entry.chan_info)
        if ns.presence:
            await ctx.presence.add_presence(
                entry.sub.channel, session.client_id, info, ttl=ctx.client.presence_ttl
            )
        if ns.join_leave or ns.force_push_join_leave:
            await ctx.broker.publish_join(entry.sub.channel, info)

    def activate(self, sub: Subscription) -> None:
        """Go live: replay what arrived while subscribing, then deliver directly."""
        entry = self.entries.get(sub.channel)
        if entry is None or entry.sub is not sub:
            return
        sub.state = SubState.SUBSCRIBED
        buffered, sub.buffer = sub.buffer, []
        for pub, position, fan in buffered:
            if self.entries.get(sub.channel) is not entry:
                return  # the replay found a gap and dropped the subscription
            deliver(sub, pub, position, fan)

    async def server_side_on_connect(
        self, claims: ConnectClaims | None, positions: dict[str, SubscribeRequest]
    ) -> dict[str, tuple[Subscription, SubscribeResult]]:
        """Subscribe the server-side channels of a new connection (token, personal)."""
        channels: list[str] = []
        if claims is not None:
            channels.extend(claims.channels)
            channels.extend(ch for ch in claims.subs if ch not in channels)
        session = self.session
        ctx = session.ctx
        if ctx.client.user_personal_channel and session.user:
            personal = ctx.rules.personal_channel(session.user)
            if personal not in channels:
                channels.append(personal)
        done: dict[str, tuple[Subscription, SubscribeResult]] = {}
        try:
            for channel in channels:
                asked = positions.get(channel)
                req = SubscribeRequest(
                    channel=channel,
                    recover=bool(asked and asked.recover),
                    offset=asked.offset if asked else 0,
                    epoch=asked.epoch if asked else "",
                )
                claim = claims.subs.get(channel) if claims else None
                done[channel] = await self.subscribe(req, server_side=True, claim=claim)
        except BaseException:
            await asyncio.shield(self.release_all())
            raise
        return done

    # -- unsubscribe, release --------------------------------------------------------

    async def unsubscribe(self, channel: str) -> bool:
        """Drop the subscription; False when there was none."""
        entry = self.entries.pop(channel, None)
        if entry is None:
            return False
        self.session.cancel(f"sub:{channel}")
        await self._quiet_release(entry, announce=True)
        return True

    async def release_all(self) -> None:
        """Release every subscription (the connection is gone)."""
        entries = list(self.entries.values())
        self.entries.clear()
        for entry in entries:
            await self._quiet_release(entry, announce=True)

    async def _quiet_release(self, entry: ChannelEntry, *, announce: bool) -> None:
        # Best effort: presence left behind expires by itself after presence_ttl.
        session = self.session
        ctx = session.ctx
        ns = entry.options.options
        channel = entry.sub.channel
        try:
            await ctx.hub.remove(entry.sub)
            if announce and ns.presence:
                await ctx.presence.remove_presence(channel, session.client_id, session.user)
            if announce and (ns.join_leave or ns.force_push_join_leave):
                await ctx.broker.publish_leave(channel, session.client_info(entry.chan_info))
        except BrokerError as exc:
            log.warning("release of %s incomplete: %s", channel, exc, extra=session.log_extra())

    def resync(self, sub: Subscription) -> None:
        """The subscription missed publications: make the client recover them."""
        entry = self.entries.get(sub.channel)
        if entry is None or entry.sub is not sub:
            return
        session = self.session
        log.info("gap in %s, client resyncs", sub.channel, extra=session.log_extra(event="gap"))
        if entry.server_side:
            # The client cannot resubscribe a server-side channel by itself: it
            # reconnects and recovers through the connect command.
            session.close(DisconnectCode.INSUFFICIENT_STATE)
            return
        del self.entries[sub.channel]
        session.push_unsubscribe(sub.channel, UnsubscribeCode.INSUFFICIENT)
        session.spawn(self._quiet_release(entry, announce=True))

    # -- token refresh and expiry --------------------------------------------------------

    def refresh(self, req: SubRefreshRequest) -> int | None:
        """Apply a new subscription token; return its ttl (None: never expires)."""
        if not req.channel:
            raise ProtocolDisconnect(DisconnectCode.BAD_REQUEST, "sub_refresh without channel")
        entry = self.entries.get(req.channel)
        if entry is None or entry.server_side:
            raise ProtocolError(ErrorCode.PERMISSION_DENIED, "not subscribed")
        if not req.token:
            raise ProtocolDisconnect(DisconnectCode.BAD_REQUEST, "sub_refresh without token")
        session = self.session
        try:
            claims = session.ctx.tokens.verify_subscription(
                req.token, user=session.user, channel=req.channel
            )
        except TokenExpired as exc:
            raise ProtocolError(ErrorCode.TOKEN_EXPIRED) from exc
        except TokenInvalid as exc:
            raise ProtocolError(ErrorCode.PERMISSION_DENIED, str(exc)) from exc
        entry.expire_at = float(claims.expire_at) if claims.expire_at is not None else None
        self._schedule_expiry(entry)
        if entry.expire_at is None:
            return None
        return max(1, int(entry.expire_at - session.ctx.clock()))

    def _schedule_expiry(self, entry: ChannelEntry) -> None:
        session = self.session
        name = f"sub:{entry.sub.channel}"
        session.cancel(name)
        if entry.expire_at is None:
            return
        delay = entry.expire_at - session.ctx.clock() + session.ctx.client.expired_close_delay
        session.schedule(name, max(delay, 0.0), lambda: self._check_expired(entry))

    def _check_expired(self, entry: ChannelEntry) -> None:
        session = self.session
        channel = entry.sub.channel
        if self.entries.get(channel) is not entry or entry.expire_at is None:
            return
        if session.ctx.clock() >= entry.expire_at:
            session.spawn(session.server_unsubscribe(channel, UnsubscribeCode.EXPIRED))

    # -- presence refresh -----------------------------------------------------------------

    def schedule_presence_refresh(self) -> None:
        self.session.restart_presence_refresh()

    def refresh_presence(self) -> None:
        """Write this connection's presence entries now (and restart the refresh timer)."""
        session = self.session
        ctx = session.ctx
        for entry in self.entries.values():
            if entry.options.options.presence and entry.sub.state is SubState.SUBSCRIBED:
                info = session.client_info(entry.chan_info)
                session.spawn(
                    ctx.presence.add_presence(
                        entry.sub.channel, session.client_id, info, ttl=ctx.client.presence_ttl
                    )
                )
        self.schedule_presence_refresh()
