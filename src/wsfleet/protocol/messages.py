"""The messages of the client protocol (v2), as typed values.

This module is the vocabulary of the whole server: commands a client sends,
replies and pushes the server sends, and the publication, client-info and
stream-position values the brokers store. It is pure data: no I/O, no clock.

Field names and meanings follow the protocol definition exactly, so the JSON
codec can encode these structs as they are. Payload fields (``data``,
``conn_info``, ``chan_info``) hold raw bytes as :class:`msgspec.Raw`: embedded
verbatim as JSON text on JSON connections, carried as bytes on Protobuf ones.
An absent payload is always the :data:`EMPTY` singleton, never ``Raw(b"")``.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Raw, Struct

EMPTY = Raw()
"""The absent payload. Always use this object for "no data"."""


# The protocol's integer types, so a JSON client gets the bounds a Protobuf client
# cannot leave: a negative or oversized id or offset is a bad request (3501), not
# a value echoed back or carried into a history query.
Uint32 = Annotated[int, Meta(ge=0, le=2**32 - 1)]
Offset = Annotated[int, Meta(ge=0, le=2**63 - 1)]
"""A stream offset: a count from 0 that a signed 64-bit counter (Redis ``INCR``) keeps."""
Int32 = Annotated[int, Meta(ge=-(2**31), le=2**31 - 1)]


def raw(data: bytes | bytearray | memoryview | Raw) -> Raw:
    """Wrap bytes as a payload, mapping empty input to :data:`EMPTY`."""
    if isinstance(data, Raw):
        return data if len(data) else EMPTY
    return Raw(bytes(data)) if len(data) else EMPTY


class _Msg(Struct, omit_defaults=True, kw_only=True):
    """Base of every message: defaults are left out of the JSON encoding."""


# -- shared values ----------------------------------------------------------


class ClientInfo(_Msg):
    """Who a connection is: carried in presence, join/leave and publications."""

    user: str = ""
    client: str = ""
    conn_info: Raw = EMPTY
    chan_info: Raw = EMPTY


class Publication(_Msg):
    """One message in a channel, with its position in the channel's stream."""

    data: Raw = EMPTY
    info: ClientInfo | None = None
    offset: int = 0
    tags: dict[str, str] | None = None
    delta: bool = False
    time: int = 0


class StreamPosition(_Msg):
    """A point in a channel's stream: an offset within an epoch."""

    offset: Offset = 0
    epoch: str = ""


class Error(_Msg):
    code: int
    message: str = ""
    temporary: bool = False


# -- requests (inside a Command) ---------------------------------------------


class FilterNode(_Msg):
    """A publication tags filter (the subscribe request's ``tf``).

    A leaf (``op`` empty) compares the tag ``key`` by ``cmp`` with ``val`` or
    ``vals``; a branch combines ``nodes`` with ``op`` "and", "or" or "not".
    Checked and compiled by :mod:`wsfleet.core.tags_filter`.
    """

    op: str = ""
    key: str = ""
    cmp: str = ""
    val: str = ""
    vals: list[str] | None = None
    nodes: list[FilterNode] | None = None


class SubscribeRequest(_Msg):
    channel: str = ""
    token: str = ""
    recover: bool = False
    epoch: str = ""
    offset: Offset = 0
    data: Raw = EMPTY
    positioned: bool = False
    recoverable: bool = False
    join_leave: bool = False
    delta: str = ""
    tf: FilterNode | None = None
    flag: int = 0


class ConnectRequest(_Msg):
    token: str = ""
    data: Raw = EMPTY
    subs: dict[str, SubscribeRequest] | None = None
    name: str = ""
    version: str = ""
    headers: dict[str, str] | None = None


class RefreshRequest(_Msg):
    token: str = ""


class SubRefreshRequest(_Msg):
    channel: str = ""
    token: str = ""


class UnsubscribeRequest(_Msg):
    channel: str = ""


class PublishRequest(_Msg):
    channel: str = ""
    data: Raw = EMPTY


class PresenceRequest(_Msg):
    channel: str = ""


class PresenceStatsRequest(_Msg):
    channel: str = ""


class HistoryRequest(_Msg):
    channel: str = ""
    limit: Int32 = 0
    since: StreamPosition | None = None
    reverse: bool = False


class PingRequest(_Msg):
    pass


class RPCRequest(_Msg):
    data: Raw = EMPTY
    method: str = ""


class SendRequest(_Msg):
    data: Raw = EMPTY


class Command(_Msg):
    """A client's command. At most one request field is set.

    A command with ``id == 0`` and no request is the client's pong.
    """

    id: Uint32 = 0
    connect: ConnectRequest | None = None
    subscribe: SubscribeRequest | None = None
    unsubscribe: UnsubscribeRequest | None = None
    publish: PublishRequest | None = None
    presence: PresenceRequest | None = None
    presence_stats: PresenceStatsRequest | None = None
    history: HistoryRequest | None = None
    ping: PingRequest | None = None
    send: SendRequest | None = None
    rpc: RPCRequest | None = None
    refresh: RefreshRequest | None = None
    sub_refresh: SubRefreshRequest | None = None


COMMAND_METHODS: tuple[str, ...] = (
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "ping",
    "send",
    "rpc",
    "refresh",
    "sub_refresh",
)
"""The request fields of :class:`Command`, in field-number order."""


# -- results (inside a Reply) -------------------------------------------------


class SubscribeResult(_Msg):
    expires: bool = False
    ttl: int = 0
    recoverable: bool = False
    epoch: str = ""
    publications: list[Publication] | None = None
    recovered: bool = False
    offset: int = 0
    positioned: bool = False
    data: Raw = EMPTY
    was_recovering: bool = False
    delta: bool = False


class ConnectResult(_Msg):
    client: str = ""
    version: str = ""
    expires: bool = False
    ttl: int = 0
    data: Raw = EMPTY
    subs: dict[str, SubscribeResult] | None = None
    ping: int = 0
    pong: bool = False
    session: str = ""
    node: str = ""
    time: int = 0


class RefreshResult(_Msg):
    client: str = ""
    version: str = ""
    expires: bool = False
    ttl: int = 0


class SubRefreshResult(_Msg):
    expires: bool = False
    ttl: int = 0


class UnsubscribeResult(_Msg):
    pass


class PublishResult(_Msg):
    pass


class PresenceResult(_Msg):
    presence: dict[str, ClientInfo] | None = None


class PresenceStatsResult(_Msg):
    num_clients: int = 0
    num_users: int = 0


class HistoryResult(_Msg):
    publications: list[Publication] | None = None
    epoch: str = ""
    offset: int = 0


class PingResult(_Msg):
    pass


class RPCResult(_Msg):
    data: Raw = EMPTY


# -- pushes -------------------------------------------------------------------


class Join(_Msg):
    info: ClientInfo


class Leave(_Msg):
    info: ClientInfo


class Unsubscribe(_Msg):
    code: int = 0
    reason: str = ""


class Message(_Msg):
    data: Raw = EMPTY


class Subscribe(_Msg):
    """Push telling the client the server subscribed it to a channel."""

    recoverable: bool = False
    epoch: str = ""
    offset: int = 0
    positioned: bool = False
    data: Raw = EMPTY


class Connect(_Msg):
    client: str = ""
    version: str = ""
    data: Raw = EMPTY
    subs: dict[str, SubscribeResult] | None = None
    expires: bool = False
    ttl: int = 0
    ping: int = 0
    pong: bool = False
    session: str = ""
    node: str = ""


class Disconnect(_Msg):
    code: int = 0
    reason: str = ""
    reconnect: bool = False


class Refresh(_Msg):
    expires: bool = False
    ttl: int = 0


class Push(_Msg):
    """An asynchronous server-to-client message about a channel."""

    channel: str = ""
    pub: Publication | None = None
    join: Join | None = None
    leave: Leave | None = None
    unsubscribe: Unsubscribe | None = None
    message: Message | None = None
    subscribe: Subscribe | None = None
    connect: Connect | None = None
    disconnect: Disconnect | None = None
    refresh: Refresh | None = None


class Reply(_Msg):
    """The server's answer to a command (``id > 0``) or a push (``id == 0``).

    A reply with nothing set is the server's ping.
    """

    id: int = 0
    error: Error | None = None
    push: Push | None = None
    connect: ConnectResult | None = None
    subscribe: SubscribeResult | None = None
    unsubscribe: UnsubscribeResult | None = None
    publish: PublishResult | None = None
    presence: PresenceResult | None = None
    presence_stats: PresenceStatsResult | None = None
    history: HistoryResult | None = None
    ping: PingResult | None = None
    rpc: RPCResult | None = None
    refresh: RefreshResult | None = None
    sub_refresh: SubRefreshResult | None = None
