"""Error, disconnect and unsubscribe codes of the client protocol.

These numbers are part of the wire contract with unmodified client SDKs: an
SDK decides from a disconnect code alone whether to reconnect, and from an
error code whether to retry. They are facts to match, not to tune.

Ranges, as the SDKs interpret them:

* disconnect codes 3000-3499 and 4000-4499: the client reconnects;
* disconnect codes 3500-3999 and 4500-4999: the client stays disconnected;
* unsubscribe codes 2000-2499: the subscription ends; 2500-2999: the client
  resubscribes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorCode(enum.IntEnum):
    """Codes carried in the ``error`` field of a reply to a command."""

    INTERNAL = 100
    UNAUTHORIZED = 101
    UNKNOWN_CHANNEL = 102
    PERMISSION_DENIED = 103
    METHOD_NOT_FOUND = 104
    ALREADY_SUBSCRIBED = 105
    LIMIT_EXCEEDED = 106
    BAD_REQUEST = 107
    NOT_AVAILABLE = 108
    TOKEN_EXPIRED = 109
    EXPIRED = 110
    TOO_MANY_REQUESTS = 111
    UNRECOVERABLE_POSITION = 112


_ERROR_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.INTERNAL: "internal server error",
    ErrorCode.UNAUTHORIZED: "unauthorized",
    ErrorCode.UNKNOWN_CHANNEL: "unknown channel",
    ErrorCode.PERMISSION_DENIED: "permission denied",
    ErrorCode.METHOD_NOT_FOUND: "method not found",
    ErrorCode.ALREADY_SUBSCRIBED: "already subscribed",
    ErrorCode.LIMIT_EXCEEDED: "limit exceeded",
    ErrorCode.BAD_REQUEST: "bad request",
    ErrorCode.NOT_AVAILABLE: "not available",
    ErrorCode.TOKEN_EXPIRED: "token expired",
    ErrorCode.EXPIRED: "expired",
    ErrorCode.TOO_MANY_REQUESTS: "too many requests",
    ErrorCode.UNRECOVERABLE_POSITION: "unrecoverable position",
}

# Errors a client may retry as they are: the condition is expected to pass.
_TEMPORARY: frozenset[ErrorCode] = frozenset({ErrorCode.INTERNAL, ErrorCode.TOO_MANY_REQUESTS})


class ProtocolError(Exception):
    """A command failed; the reply carries this error and the connection stays up.

    ``message`` defaults to the protocol's standard text for ``code``.
    ``temporary`` defaults to the protocol's classification of ``code``; a
    broker outage makes otherwise permanent failures temporary.
    """

    def __init__(
        self, code: ErrorCode, message: str | None = None, *, temporary: bool | None = None
    ) -> None:
        self.code = code
        self.message = message if message is not None else _ERROR_MESSAGES[code]
        self.temporary = code in _TEMPORARY if temporary is None else temporary
        super().__init__(f"{int(code)}: {self.message}")


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Why the server closes a connection: sent as the WebSocket close code and reason."""

    code: int
    reason: str

    @property
    def reconnect(self) -> bool:
        """Whether an SDK reconnects after this code (the protocol's ranges)."""
        return not (3500 <= self.code < 4000 or 4500 <= self.code < 5000)


class DisconnectCode:
    """The disconnects the server uses; each a :class:`Disconnect` value."""

    CONNECTION_CLOSED = Disconnect(3000, "connection closed")
    SHUTDOWN = Disconnect(3001, "shutdown")
    SERVER_ERROR = Disconnect(3004, "internal server error")
    EXPIRED = Disconnect(3005, "connection expired")
    SUB_EXPIRED = Disconnect(3006, "subscription expired")
    SLOW = Disconnect(3008, "slow")
    WRITE_ERROR = Disconnect(3009, "write error")
    INSUFFICIENT_STATE = Disconnect(3010, "insufficient state")
    FORCE_RECONNECT = Disconnect(3011, "force reconnect")
    # wsfleet's own reasons to move a client, with the protocol's reconnect code:
    REBALANCE = Disconnect(3011, "rebalance")
    LIFETIME = Disconnect(3011, "connection lifetime")
    NO_PONG = Disconnect(3012, "no pong")
    TOO_MANY_REQUESTS = Disconnect(3013, "too many requests")
    INVALID_TOKEN = Disconnect(3500, "invalid token")
    BAD_REQUEST = Disconnect(3501, "bad request")
    STALE = Disconnect(3502, "stale")
    FORCE_NO_RECONNECT = Disconnect(3503, "force disconnect")
    CONNECTION_LIMIT = Disconnect(3504, "connection limit")
    CHANNEL_LIMIT = Disconnect(3505, "channel limit")
    INAPPROPRIATE_PROTOCOL = Disconnect(3506, "inappropriate protocol")
    PERMISSION_DENIED = Disconnect(3507, "permission denied")
    NOT_AVAILABLE = Disconnect(3508, "not available")
    TOO_MANY_ERRORS = Disconnect(3509, "too many errors")


class ProtocolDisconnect(Exception):
    """A command or frame is bad enough that the connection must close."""

    def __init__(self, disconnect: Disconnect, detail: str = "") -> None:
        self.disconnect = disconnect
        self.detail = detail
        super().__init__(f"{disconnect.code} {disconnect.reason}: {detail}")


class UnsubscribeCode(enum.IntEnum):
    """Codes of the ``unsubscribe`` push (server-initiated unsubscribe)."""

    SERVER = 2000
    INSUFFICIENT = 2500
    EXPIRED = 2501


UNSUBSCRIBE_REASONS: dict[UnsubscribeCode, str] = {
    UnsubscribeCode.SERVER: "server unsubscribe",
    UnsubscribeCode.INSUFFICIENT: "insufficient state",
    UnsubscribeCode.EXPIRED: "subscription expired",
}
