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

The same backend also keeps the fleet's shared state (:class:`FleetState`):
which nodes are alive, how many connections each user holds on each node,
and a control channel between nodes.
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


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    """One node as the fleet registry shows it; refreshed by every heartbeat.

    uid: unique per process life (a restarted node has a new one); name: the
    configured node name; public/internal: ``host:port`` addresses others
    can reach; started_at/updated_at: Unix seconds.
    """

    uid: str
    name: str
    version: str = ""
    phase: str = ""
    public: tuple[str, ...] = ()
    internal: tuple[str, ...] = ()
    num_clients: int = 0
    connection_limit: int = 0
    """The node's cap on connections (``server.connection_limit``); 0: none."""
    num_users: int = 0
    num_subs: int = 0
    num_channels: int = 0
    cpu: float = 0.0
    """CPU seconds the process used."""
    rss: int = 0
    """Resident memory of the process, bytes."""
    started_at: float = 0.0
    updated_at: float = 0.0


class FleetState(abc.ABC):
    """What the nodes of one fleet share besides channels.

    * The registry: each node heartbeats its :class:`NodeInfo` with a time to
      live; a node whose entry has expired is dead to the rest of the fleet,
      and the presence entries it added are no longer answered by the other
      nodes. (A backend whose presence lives in one process, the memory one,
      holds only that node's entries and answers them while it runs.)
    * Per-user connection counts by node, for a fleet-wide per-user limit;
      the counts of dead nodes do not count.
    * Control messages: :meth:`publish_control` reaches :attr:`on_control` on
      every node subscribed at that moment, the sender's own included; at
      most once, no ordering between senders, nothing kept for nodes that
      are down.

    on_control: set by the node before ``start``; None drops control messages.
    """

    on_control: Callable[[bytes], None] | None = None

    @abc.abstractmethod
    async def heartbeat(self, info: NodeInfo, *, ttl: float) -> bool:
        """Record ``info`` as alive for ``ttl`` seconds.

        Returns False when the node was not alive in the registry before this
        call (its first heartbeat, or it had dropped out, e.g. after a long
        outage or a backend that lost its data), True otherwise.
        """

    @abc.abstractmethod
    async def leave(self, uid: str) -> None:
        """Remove the node and the user counts it holds, at once (a clean stop)."""

    @abc.abstractmethod
    async def nodes(self) -> list[NodeInfo]:
        """The live nodes, in no particular order."""

    @abc.abstractmethod
    async def claim_user_connection(self, uid: str, user: str, *, count: int, limit: int) -> bool:
        """Set node ``uid``'s count of ``user``'s connections to ``count`` unless
        the user's connections on all live nodes would then exceed ``limit``.

        ``count`` includes the connection being admitted. Returns whether it
        was admitted; when not, nothing changes.
        """

    @abc.abstractmethod
    async def set_user_connections(self, uid: str, counts: dict[str, int]) -> None:
        """Set node ``uid``'s connection counts of several users; 0 removes a user."""

    @abc.abstractmethod
    async def publish_control(self, message: bytes) -> None:
        """Send ``message`` to every node's :attr:`on_control`."""
