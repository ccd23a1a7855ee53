"""The channel commands that are not subscriptions: publish, presence, history.

Each checks the channel's namespace options and the connection's rights
before it touches the broker: ``allow_*_for_client`` (authenticated users),
``allow_*_for_anonymous`` and ``allow_*_for_subscriber`` (connections
subscribed to the channel).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wsfleet.brokers.base import HistoryQuery, PublishOptions
from wsfleet.core.channels import ChannelOptions
from wsfleet.protocol.codes import DisconnectCode, ErrorCode, ProtocolDisconnect, ProtocolError
from wsfleet.protocol.messages import (
    Command,
    HistoryRequest,
    HistoryResult,
    PresenceRequest,
    PresenceResult,
    PresenceStatsRequest,
    PresenceStatsResult,
    Publication,
    PublishRequest,
    PublishResult,
    Reply,
)

if TYPE_CHECKING:
    from wsfleet.core.client import ClientSession


class ChannelCommands:
    """Publish, presence and history for one connection."""

    __slots__ = ("session",)

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    def _resolve(self, channel: str, method: str) -> ChannelOptions:
        if not channel:
            raise ProtocolDisconnect(DisconnectCode.BAD_REQUEST, f"{method} without channel")
        return self.session.ctx.rules.resolve(channel)

    def _allowed(self, channel: str, *, client: bool, anonymous: bool, subscriber: bool) -> bool:
        session = self.session
        if session.user:
            if client:
                return True
        elif anonymous:
            return True
        return subscriber and channel in session.subs.entries

    async def handle_publish(self, cmd: Command) -> None:
        req = cmd.publish or PublishRequest()
        opts = self._resolve(req.channel, "publish")
        ns = opts.options
        if not self._allowed(
            req.channel,
            client=ns.allow_publish_for_client,
            anonymous=ns.allow_publish_for_anonymous,
            subscriber=ns.allow_publish_for_subscriber,
        ):
            raise ProtocolError(ErrorCode.PERMISSION_DENIED)
        if not len(req.data):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "publication without data")
        session = self.session
        entry = session.subs.entries.get(req.channel)
        info = session.client_info(entry.chan_info if entry else b"")
        pub = Publication(data=req.data, info=info)
        options = PublishOptions(history=opts.history, delta=ns.delta_publish)
        await session.ctx.broker.publish(req.channel, pub, options)
        session.reply(Reply(id=cmd.id, publish=PublishResult()))

    def _presence_options(self, channel: str, method: str) -> ChannelOptions:
        opts = self._resolve(channel, method)
        ns = opts.options
        if not ns.presence:
            raise ProtocolError(ErrorCode.NOT_AVAILABLE, "presence is off for this channel")
        if not self._allowed(
            channel,
            client=ns.allow_presence_for_client,
            anonymous=ns.allow_presence_for_anonymous,
            subscriber=ns.allow_presence_for_subscriber,
        ):
            raise ProtocolError(ErrorCode.PERMISSION_DENIED)
        return opts

    async def handle_presence(self, cmd: Command) -> None:
        req = cmd.presence or PresenceRequest()
        self._presence_options(req.channel, "presence")
        entries = await self.session.ctx.presence.presence(req.channel)
        result = PresenceResult(presence=entries or None)
        self.session.reply(Reply(id=cmd.id, presence=result))

    async def handle_presence_stats(self, cmd: Command) -> None:
        req = cmd.presence_stats or PresenceStatsRequest()
        self._presence_options(req.channel, "presence_stats")
        clients, users = await self.session.ctx.presence.presence_stats(req.channel)
        result = PresenceStatsResult(num_clients=clients, num_users=users)
        self.session.reply(Reply(id=cmd.id, presence_stats=result))

    async def handle_history(self, cmd: Command) -> None:
        req = cmd.history or HistoryRequest()
        opts = self._resolve(req.channel, "history")
        ns = opts.options
        if not opts.history_enabled:
            raise ProtocolError(ErrorCode.NOT_AVAILABLE, "history is off for this channel")
        if not self._allowed(
            req.channel,
            client=ns.allow_history_for_client,
            anonymous=ns.allow_history_for_anonymous,
            subscriber=ns.allow_history_for_subscriber,
        ):
            raise ProtocolError(ErrorCode.PERMISSION_DENIED)
        most = self.session.ctx.client.history_max_publication_limit
        limit = most if req.limit < 0 or req.limit > most else req.limit
        query = HistoryQuery(since=req.since, limit=limit, reverse=req.reverse)
        page = await self.session.ctx.broker.history(req.channel, query, opts.history)
        if req.since is not None and req.since.epoch and req.since.epoch != page.position.epoch:
            raise ProtocolError(ErrorCode.UNRECOVERABLE_POSITION)
        result = HistoryResult(
            publications=page.publications or None,
            epoch=page.position.epoch,
            offset=page.position.offset,
        )
        self.session.reply(Reply(id=cmd.id, history=result))
