"""The broker contract: what a node needs from its backplane, and nothing else.

A broker fans publications out to every node with subscribers on a channel,
keeps each channel's history as a stream of offsets within an epoch, and
keeps presence. Implementations sit beside this file (``memory.py``,
``redis.py``, ...) and are loaded lazily by :func:`wsfleet.brokers.load_broker`, so a
missing optional dependency never breaks the default install. One
conformance suite (``tests/brokers/``) holds every implementation to the same
rules.

Rules every implementation follows:

* Offsets in a channel's stream start at 1 and grow by exactly 1 per
  publication that is kept in history. The epoch names one life of the
  stream: when a stream's state is lost (expired metadata, a backend that
  lost its data) the epoch changes, so a client holding an old position is
  never told that it recovered.
* A publication is appended to history and handed to subscribers with the
  same offset, atomically: a subscriber never sees an offset that history
  does not hold, nor history an offset that was never delivered.
* Publications on one channel reach each node in offset order.
* Event handler callbacks run on the event loop and must not block.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from wsfleet.protocol.messages import ClientInfo, Publication, StreamPosition


class BrokerError(Exception):
    """The backend failed or is unreachable; the operation may be retried later."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryOptions:
    """How a channel keeps history, from its namespace options.

    size: publications kept; 0 keeps no history (publications get no offset).
    ttl: seconds a publication is kept; 0 with ``size > 0`` is invalid.
    meta_ttl: seconds the stream's epoch and top offset outlive its last
        publication; 0 keeps them for the broker's lifetime. Past it the
        stream starts over in a new epoch.
    """

    size: int = 0
    ttl: float = 0.0
    meta_ttl: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self.ttl > 0


NO_HISTORY = HistoryOptions()


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishOptions:
    """Per-publication options.

    history: where and how long to keep it; :data:`NO_HISTORY` keeps nothing.
    idempotency_key: when non-empty, a second publish with the same key within
        ``idempotent_ttl`` seconds is not published again and returns the first
        result. Empty disables deduplication.
    idempotent_ttl: how long a key is remembered (default 300 s).
    delta: subscribers that negotiated delta compression may get this
        publication as a delta against the previous one in the stream.
    """

    history: HistoryOptions = NO_HISTORY
    idempotency_key: str = ""
    idempotent_ttl: float = 300.0
    delta: bool = False


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Where a publication landed. ``suppressed`` marks an idempotent repeat."""

    position: StreamPosition
    suppressed: bool = False


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Publications read from a stream, and the stream's current top position."""

    publications: list[Publication] = field(default_factory=list)
    position: StreamPosition = field(default_factory=StreamPosition)


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryQuery:
    """What to read from a channel's stream.

    since: read publications after this position (before it, with
        ``reverse``); None reads from the oldest kept (newest, with
        ``reverse``). A ``since`` in another epoch than the stream's raises
        nothing: the page comes back with the current position and the
        caller compares epochs.
    limit: at most this many publications; 0 returns none (only the
        position); -1 returns all that are kept.
    reverse: newest first; with ``since``, pages backwards: the publications
        *before* ``since`` (offset < since.offset), newest first.
    """

    since: StreamPosition | None = None
    limit: int = 0
    reverse: bool = False


class BrokerEventHandler(Protocol):
    """What the node hears from the broker. Implemented by the node's hub."""

    def on_publication(
        self,
        channel: str,
        pub: Publication,
        position: StreamPosition,
        prev: Publication | None,
    ) -> None:
        """A publication for a channel this node subscribed to.

        ``prev`` is the previous publication of the stream when the publish asked
        for delta compression and the broker had one, else None.
        """

    def on_join(self, channel: str, info: ClientInfo) -> None:
        """A client joined the channel somewhere in the fleet."""

    def on_leave(self, channel: str, info: ClientInfo) -> None:
        """A client left the channel somewhere in the fleet."""


class Broker(abc.ABC):
    """Fan-out and history. One instance per node.

    on_resubscribed: set by the node. A broker whose delivery was interrupted
    (a lost connection to its backend) calls it, once delivery is restored,
    with the channels whose publications in the gap this node did not get;
    the node then makes their subscribers recover from history. None: nobody
    listens.
    """

    on_resubscribed: Callable[[set[str]], None] | None = None

    @abc.abstractmethod
    async def start(self, handler: BrokerEventHandler) -> None:
        """Connect and start delivering events to ``handler``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop delivering events and release connections. Idempotent."""

    def unavailable_reason(self) -> str | None:
        """Why the broker cannot serve now (for ``/readyz``), or None when it can."""
        return None

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start receiving the channel's events on this node.

        The node calls it when the channel gets its first local subscriber.
        """

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving the channel's events; called when the last local one leaves."""

    @abc.abstractmethod
    async def publish(
        self, channel: str, pub: Publication, options: PublishOptions
    ) -> PublishResult:
        """Append to history (if enabled) and fan out to every subscribed node.

        ``pub.offset`` is ignored; the broker assigns it.
        """

    @abc.abstractmethod
    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        """Fan a join event out to every subscribed node."""

    @abc.abstractmethod
    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        """Fan a leave event out to every subscribed node."""

    @abc.abstractmethod
    async def history(
        self, channel: str, query: HistoryQuery, history: HistoryOptions
    ) -> HistoryPage:
        """Read the channel's stream. ``history`` gives the retention to apply."""

    @abc.abstractmethod
    async def remove_history(self, channel: str) -> None:
        """Drop the channel's kept publications; the epoch and top offset stay."""


class PresenceManager(abc.ABC):
    """Who is subscribed to a channel, fleet-wide. Entries expire unless refreshed."""

    @abc.abstractmethod
    async def add_presence(
        self, channel: str, client_id: str, info: ClientInfo, *, ttl: float
    ) -> None:
        """Add or refresh a client's entry; it expires after ``ttl`` seconds."""

    @abc.abstractmethod
    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        """Remove a client's entry at once."""

    @abc.abstractmethod
    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        """Live entries by client id."""

    @abc.abstractmethod
    async def presence_stats(self, channel: str) -> tuple[int, int]:
        """Live (clients, distinct users) counts."""
