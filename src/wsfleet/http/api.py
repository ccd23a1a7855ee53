"""The server HTTP API: ``POST /api/<method>`` with ``X-API-Key``.

Request and response bodies are shaped like Centrifugo's HTTP API so that
existing server-side clients (the ``cent`` library among them) work
unchanged: a reply is ``{"result": {...}}`` or ``{"error": {"code", "message"}}``
with HTTP 200 (a body that is not valid JSON for the method is error 107);
a batch body that cannot be read is a 400, a bad key a 401 and an unknown
method a 404.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import Raw, Struct

from wsfleet.brokers.base import NO_HISTORY, BrokerError, HistoryQuery, PublishOptions
from wsfleet.protocol.codes import Disconnect, DisconnectCode, ErrorCode, ProtocolError
from wsfleet.protocol.messages import EMPTY, ClientInfo, Publication, StreamPosition, raw

if TYPE_CHECKING:
    from wsfleet.node import Node

log = logging.getLogger("wsfleet.api")


class ApiBadRequest(Exception):
    """The request body cannot be read at all (HTTP 400)."""


# -- request bodies ---------------------------------------------------------------


class _Req(Struct, kw_only=True, forbid_unknown_fields=False):
    pass


class PublishReq(_Req):
    channel: str = ""
    data: Raw = EMPTY
    b64data: str = ""
    skip_history: bool = False
    tags: dict[str, str] | None = None
    idempotency_key: str = ""
    delta: bool = False


class BroadcastReq(_Req):
    channels: list[str] = []
    data: Raw = EMPTY
    b64data: str = ""
    skip_history: bool = False
    tags: dict[str, str] | None = None
    idempotency_key: str = ""
    delta: bool = False


class UserChannelReq(_Req):
    user: str = ""
    channel: str = ""
    client: str = ""


class DisconnectObj(_Req):
    code: int = 0
    reason: str = ""


class DisconnectReq(_Req):
    user: str = ""
    client: str = ""
    whitelist: list[str] = []
    disconnect: DisconnectObj | None = None


class ChannelReq(_Req):
    channel: str = ""


class HistoryReq(_Req):
    channel: str = ""
    limit: int = 0
    since: StreamPosition | None = None
    reverse: bool = False


class ChannelsReq(_Req):
    pattern: str = ""


Handler = Callable[[bytes], Awaitable[object]]


def _decode(body: bytes, typ: type[Any]) -> Any:
    try:
        return msgspec.json.decode(body or b"{}", type=typ)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, str(exc)) from exc


def _payload(data: Raw, b64data: str) -> Raw:
    if b64data:
        try:
            return raw(base64.b64decode(b64data, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "b64data is not base64") from exc
    if not len(data) or bytes(data) == b"null":
        raise ProtocolError(ErrorCode.BAD_REQUEST, "data required")
    return data


def _require(value: str, name: str) -> str:
    if not value:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{name} required")
    return value


class ServerApi:
    """The API methods, over a node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.methods: dict[str, Handler] = {
            "publish": self.publish,
            "broadcast": self.broadcast,
            "subscribe": self.subscribe,
            "unsubscribe": self.unsubscribe,
            "disconnect": self.disconnect,
            "presence": self.presence,
            "presence_stats": self.presence_stats,
            "history": self.history,
            "history_remove": self.history_remove,
            "channels": self.channels,
            "info": self.info,
        }

    async def call(self, method: str, body: bytes) -> dict[str, object]:
        """Run one method; the reply body as a dict (``result`` or ``error``)."""
        if method == "batch":
            return await self.batch(body)
        handler = self.methods.get(method)
        if handler is None:
            err = ProtocolError(ErrorCode.METHOD_NOT_FOUND)
            return {"error": {"code": int(err.code), "message": err.message}}
        try:
            return {"result": await handler(body)}
        except ProtocolError as exc:
            self.node.stats.errors[int(exc.code)] += 1
            return {"error": {"code": int(exc.code), "message": exc.message}}
        except BrokerError as exc:
            log.warning("api %s: broker error: %s", method, exc, extra={"event": "api_broker"})
            self.node.stats.errors[int(ErrorCode.INTERNAL)] += 1
            return {"error": _broker_error(exc)}

    # -- publishing -------------------------------------------------------------------

    async def _publish_one(
        self,
        channel: str,
        data: Raw,
        *,
        skip_history: bool,
        tags: dict[str, str] | None,
        idempotency_key: str,
        delta: bool,
    ) -> dict[str, object]:
        opts = self.node.rules.resolve(_require(channel, "channel"))
        options = PublishOptions(
            history=NO_HISTORY if skip_history else opts.history,
            idempotency_key=idempotency_key,
            delta=delta or opts.options.delta_publish,
        )
        result = await self.node.broker.publish(channel, Publication(data=data, tags=tags), options)
        pos = result.position
        return {"offset": pos.offset, "epoch": pos.epoch} if pos.offset else {}

    async def publish(self, body: bytes) -> object:
        req: PublishReq = _decode(body, PublishReq)
        return await self._publish_one(
            req.channel,
            _payload(req.data, req.b64data),
            skip_history=req.skip_history,
            tags=req.tags,
            idempotency_key=req.idempotency_key,
            delta=req.delta,
        )

    async def broadcast(self, body: bytes) -> object:
        req: BroadcastReq = _decode(body, BroadcastReq)
        if not req.channels:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "channels required")
        data = _payload(req.data, req.b64data)
        responses: list[dict[str, object]] = []
        for channel in req.channels:
            try:
                result = await self._publish_one(
                    channel,
                    data,
                    skip_history=req.skip_history,
                    tags=req.tags,
                    idempotency_key=req.idempotency_key and f"{req.idempotency_key}:{channel}",
                    delta=req.delta,
                )
                responses.append({"result": result})
            except ProtocolError as exc:
                responses.append({"error": {"code": int(exc.code), "message": exc.message}})
            except BrokerError as exc:
                responses.append({"error": _broker_error(exc)})
        return {"responses": responses}

    # -- connections ------------------------------------------------------------------

    # Each acts on this node's connections at once and on the other nodes'
    # through the control channel; the reply does not wait for them.

    async def subscribe(self, body: bytes) -> object:
        req: UserChannelReq = _decode(body, UserChannelReq)
        self.node.rules.resolve(_require(req.channel, "channel"))
        await self.node.fleet.subscribe(_user(req.user, req.client), req.client, req.channel)
        return {}

    async def unsubscribe(self, body: bytes) -> object:
        req: UserChannelReq = _decode(body, UserChannelReq)
        _require(req.channel, "channel")
        await self.node.fleet.unsubscribe(_user(req.user, req.client), req.client, req.channel)
        return {}

    async def disconnect(self, body: bytes) -> object:
        req: DisconnectReq = _decode(body, DisconnectReq)
        disconnect = DisconnectCode.FORCE_NO_RECONNECT
        if req.disconnect is not None and req.disconnect.code:
            if not 3000 <= req.disconnect.code < 5000:
                raise ProtocolError(ErrorCode.BAD_REQUEST, "disconnect code must be 3000-4999")
            disconnect = Disconnect(req.disconnect.code, req.disconnect.reason)
        user = _user(req.user, req.client)
        await self.node.fleet.disconnect(user, req.client, req.whitelist, disconnect)
        return {}

    # -- channel state ---------------------------------------------------------------------

    def _presence_channel(self, body: bytes) -> str:
        req: ChannelReq = _decode(body, ChannelReq)
        opts = self.node.rules.resolve(_require(req.channel, "channel"))
        if not opts.options.presence:
            raise ProtocolError(ErrorCode.NOT_AVAILABLE, "presence is off for this channel")
        return req.channel

    async def presence(self, body: bytes) -> object:
        channel = self._presence_channel(body)
        entries = await self.node.presence.presence(channel)
        return {"presence": {cid: _info(info) for cid, info in entries.items()}}

    async def presence_stats(self, body: bytes) -> object:
        channel = self._presence_channel(body)
        clients, users = await self.node.presence.presence_stats(channel)
        return {"num_clients": clients, "num_users": users}

    async def history(self, body: bytes) -> object:
        req: HistoryReq = _decode(body, HistoryReq)
        opts = self.node.rules.resolve(_require(req.channel, "channel"))
        if not opts.history_enabled:
            raise ProtocolError(ErrorCode.NOT_AVAILABLE, "history is off for this channel")
        query = HistoryQuery(since=req.since, limit=req.limit, reverse=req.reverse)
        page = await self.node.broker.history(req.channel, query, opts.history)
        if req.since is not None and req.since.epoch and req.since.epoch != page.position.epoch:
            raise ProtocolError(ErrorCode.UNRECOVERABLE_POSITION)
        return {
            "publications": [_pub(p) for p in page.publications],
            "offset": page.position.offset,
            "epoch": page.position.epoch,
        }

    async def history_remove(self, body: bytes) -> object:
        req: ChannelReq = _decode(body, ChannelReq)
        self.node.rules.resolve(_require(req.channel, "channel"))
        await self.node.broker.remove_history(req.channel)
        return {}

    async def channels(self, body: bytes) -> object:
        req: ChannelsReq = _decode(body, ChannelsReq)
        counts, missing = await self.node.fleet.channels(req.pattern)
        result: dict[str, object] = {
            "channels": {ch: {"num_clients": n} for ch, n in counts.items()}
        }
        if missing:
            # Partial counts are still useful (a dashboard), but never silently partial.
            result["unanswered"] = [{"uid": n.uid, "name": n.name} for n in missing]
        return result

    async def info(self, body: bytes) -> object:
        return {"nodes": self.node.fleet_view(await self.node.fleet.live_nodes())}

    async def batch(self, body: bytes) -> dict[str, object]:
        """Several methods in one request; each reply is keyed by its method.

        Publications start one after another without waiting for each other, so the
        broker sends them in command order but many per round trip (per-channel order
        holds); any other command first waits for the publications before it.
        """
        slots: list[tuple[str, dict[str, object] | asyncio.Task[dict[str, object]]]] = []
        started: list[asyncio.Task[dict[str, object]]] = []
        for command in _batch_commands(body):
            if isinstance(command, dict):
                slots.append(("", command))
                continue
            method, params = command
            if method not in self.methods:
                slots.append(("", _error(ProtocolError(ErrorCode.METHOD_NOT_FOUND))))
            elif method == "publish":
                started.append(asyncio.ensure_future(self.call(method, params)))
                slots.append((method, started[-1]))
            else:
                await _finish(started)
                slots.append((method, await self.call(method, params)))
        await _finish(started)
        replies = []
        for method, slot in slots:
            reply = slot.result() if isinstance(slot, asyncio.Task) else slot
            replies.append({method: reply["result"]} if "result" in reply else reply)
        return {"replies": replies}


async def _finish(tasks: list[asyncio.Task[dict[str, object]]]) -> None:
    if tasks:
        await asyncio.gather(*tasks)
        tasks.clear()


def _batch_commands(body: bytes) -> list[tuple[str, bytes] | dict[str, object]]:
    """A batch's commands as (method, params), or the error reply of a malformed one."""
    try:
        req = msgspec.json.decode(body or b"{}", type=dict[str, Raw])
        commands = msgspec.json.decode(req.get("commands", b"[]"), type=list[Raw])
    except msgspec.ValidationError as exc:
        raise ApiBadRequest("commands must be a list") from exc
    except msgspec.DecodeError as exc:
        raise ApiBadRequest(str(exc)) from exc
    out: list[tuple[str, bytes] | dict[str, object]] = []
    for command in commands:
        try:
            parsed = msgspec.json.decode(command, type=dict[str, Raw])
        except (msgspec.DecodeError, msgspec.ValidationError):
            parsed = {}
        if len(parsed) != 1:
            out.append(_error(ProtocolError(ErrorCode.BAD_REQUEST, "bad command")))
            continue
        ((method, params),) = parsed.items()
        out.append((method, bytes(params)))
    return out


def _user(user: str, client: str) -> str:
    if not user and not client:
        # An empty user would select every anonymous connection: never by accident.
        raise ProtocolError(ErrorCode.BAD_REQUEST, "user required")
    return user


def _broker_error(exc: BrokerError) -> dict[str, object]:
    # Temporary: the same call may succeed once the broker is back.
    return {"code": int(ErrorCode.INTERNAL), "message": f"broker: {exc}", "temporary": True}


def _error(exc: ProtocolError) -> dict[str, object]:
    return {"error": {"code": int(exc.code), "message": exc.message}}


def _info(info: ClientInfo) -> dict[str, object]:
    out: dict[str, object] = {"client": info.client, "user": info.user}
    if len(info.conn_info):
        out["conn_info"] = info.conn_info
    if len(info.chan_info):
        out["chan_info"] = info.chan_info
    return out


def _pub(pub: Publication) -> dict[str, object]:
    out: dict[str, object] = {"data": pub.data, "offset": pub.offset}
    if pub.tags:
        out["tags"] = pub.tags
    if pub.info is not None:
        out["info"] = _info(pub.info)
    return out
