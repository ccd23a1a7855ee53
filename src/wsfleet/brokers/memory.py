"""The in-memory broker: history, fan-out and presence inside one process.

This is the embedded default: ``wsfleet serve`` with no broker configured runs
a complete single node on it. It is not a backplane: nothing leaves the
process, so two nodes with a memory broker each never see each other's
publications. Everything here is plain dictionaries and deques touched from
the event loop only; no method awaits anything, so every operation is atomic
with respect to the others and needs no lock.

Memory stays bounded: publications are trimmed by size and age on every write
and read, streams whose metadata expired are dropped, and a sweep that runs at
most every :data:`SWEEP_INTERVAL` seconds of the injected clock removes
expired idempotency keys, presence entries and idle streams of channels that
nobody touches any more.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from msgspec import structs

from wsfleet.brokers.base import (
    Broker,
    BrokerEventHandler,
    HistoryOptions,
    HistoryPage,
    HistoryQuery,
    PresenceManager,
    PublishOptions,
    PublishResult,
)
from wsfleet.brokers.memory_fleet import MemoryFleet
from wsfleet.protocol.messages import ClientInfo, Publication, StreamPosition

__all__ = ["SWEEP_INTERVAL", "MemoryBroker"]

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = 10.0
"""Seconds between sweeps of expired state of channels nobody touches."""


def _new_epoch() -> str:
    # Eight URL-safe characters: short on the wire, and a collision between two
    # lives of the same stream is practically impossible.
    return secrets.token_urlsafe(6)


@dataclass(slots=True)
class _Stream:
    """One life (epoch) of a channel's history stream."""

    epoch: str
    top: int = 0
    # (publication with its offset set, expire_at); oldest on the left.
    pubs: deque[tuple[Publication, float]] = field(default_factory=deque)
    # When the epoch and top offset are forgotten; inf when meta_ttl is 0.
    meta_expire_at: float = math.inf

    def trim(self, now: float, size: int) -> None:
        """Drop publications past their TTL and beyond the newest ``size``.

        A ``size`` of 0 or less trims by age only.
        """
        pubs = self.pubs
        while pubs and pubs[0][1] <= now:
            pubs.popleft()
        if size > 0:
            while len(pubs) > size:
                pubs.popleft()

    def touch(self, now: float, meta_ttl: float) -> None:
        self.meta_expire_at = now + meta_ttl if meta_ttl > 0 else math.inf

    def position(self) -> StreamPosition:
        return StreamPosition(offset=self.top, epoch=self.epoch)


def _select(pubs: Iterable[Publication], query: HistoryQuery) -> list[Publication]:
    """Apply since/limit/reverse to kept publications (oldest first)."""
    if query.limit == 0:
        return []
    selected = list(pubs)
    if query.since is not None:
        # The epoch of ``since`` is not compared here: the page carries the
        # stream's position and the caller (recovery) decides what a
        # different epoch means.
        mark = query.since.offset
        if query.reverse:
            selected = [pub for pub in selected if pub.offset < mark]
        else:
            selected = [pub for pub in selected if pub.offset > mark]
    if query.reverse:
        selected.reverse()
    if query.limit > 0:
        del selected[query.limit :]
    return selected


class MemoryBroker(Broker, PresenceManager):
    """Broker and presence manager for a single node, kept in process memory.

    clock: the time source for every expiry (history TTL, meta TTL,
        idempotency, presence), in seconds; defaults to :func:`time.time`.
        Tests pass a fake clock to move time without sleeping.
    epoch_factory: makes the epoch of each new stream; None uses a random
        eight-character string.

    Publications handed to the event handler and returned by :meth:`history`
    are the stored objects: callers must not mutate them.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        epoch_factory: Callable[[], str] | None = None,
    ) -> None:
        self._clock = clock
        self._new_epoch = epoch_factory or _new_epoch
        self._handler: BrokerEventHandler | None = None
        self._subscribed: set[str] = set()
        self._streams: dict[str, _Stream] = {}
        # (channel, key) -> (first result, expire_at)
        self._idempotent: dict[tuple[str, str], tuple[PublishResult, float]] = {}
        # channel -> client id -> (info, expire_at)
        self._presence: dict[str, dict[str, tuple[ClientInfo, float]]] = {}
        self._next_sweep = -math.inf
        self.fleet = MemoryFleet(clock=clock)

    # -- lifecycle ---------------------------------------------------------

    async def start(self, handler: BrokerEventHandler) -> None:
        self._handler = handler

    async def close(self) -> None:
        # Only delivery stops: history and presence stay readable, which is
        # harmless for an in-process store and keeps close() idempotent.
        self._handler = None
        self._subscribed.clear()
        self.fleet.detach()

    async def subscribe(self, channel: str) -> None:
        self._subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._subscribed.discard(channel)

    # -- publications ------------------------------------------------------

    async def publish(
        self, channel: str, pub: Publication, options: PublishOptions
    ) -> PublishResult:
        now = self._clock()
        self._maybe_sweep(now)
        key = (channel, options.idempotency_key) if options.idempotency_key else None
        if key is not None:
            seen = self._idempotent.get(key)
            if seen is not None and seen[1] > now:
                return PublishResult(seen[0].position, suppressed=True)

        history = options.history
        prev: Publication | None = None
        if history.enabled:
            stream = self._stream(channel, now, history.meta_ttl)
            stream.trim(now, history.size)
            if options.delta and stream.pubs:
                prev = stream.pubs[-1][0]
            stream.top += 1
            pub = structs.replace(pub, offset=stream.top)
            stream.pubs.append((pub, now + history.ttl))
            stream.trim(now, history.size)
            stream.touch(now, history.meta_ttl)
            result = PublishResult(stream.position())
        else:
            # Not kept: no offset, no stream touched, only fanned out.
            if pub.offset:
                pub = structs.replace(pub, offset=0)
            result = PublishResult(StreamPosition())

        if key is not None:
            self._idempotent[key] = (result, now + options.idempotent_ttl)

        # History is updated above, so a subscriber that reads history while
        # handling this event finds the publication there.
        handler = self._handler
        if handler is not None and channel in self._subscribed:
            try:
                handler.on_publication(channel, pub, result.position, prev)
            except Exception:
                # The publication is already stored; a failing handler must
                # not make the publisher believe it was not.
                logger.exception("event handler failed on a publication in %r", channel)
        return result

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        handler = self._handler
        if handler is not None and channel in self._subscribed:
            try:
                handler.on_join(channel, info)
            except Exception:
                logger.exception("event handler failed on a join in %r", channel)

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        handler = self._handler
        if handler is not None and channel in self._subscribed:
            try:
                handler.on_leave(channel, info)
            except Exception:
                logger.exception("event handler failed on a leave in %r", channel)

    async def history(
        self, channel: str, query: HistoryQuery, history: HistoryOptions
    ) -> HistoryPage:
        now = self._clock()
        self._maybe_sweep(now)
        if history.enabled:
            # Reading creates the stream: a client that subscribes to an empty
            # channel gets an epoch, and the first publication must keep it,
            # or that client could never recover. Reading is activity, so it
            # also postpones the expiry of the metadata.
            stream = self._stream(channel, now, history.meta_ttl)
            stream.touch(now, history.meta_ttl)
        else:
            # No history configured: report what exists, create nothing, so
            # reads of history-less channels cannot grow memory.
            found = self._streams.get(channel)
            if found is None or found.meta_expire_at <= now:
                return HistoryPage()
            stream = found
        stream.trim(now, history.size)
        pubs = _select((pub for pub, _ in stream.pubs), query)
        return HistoryPage(pubs, stream.position())

    async def remove_history(self, channel: str) -> None:
        stream = self._streams.get(channel)
        if stream is not None:
            stream.pubs.clear()

    def _stream(self, channel: str, now: float, meta_ttl: float) -> _Stream:
        """The channel's live stream, starting a new epoch when none is."""
        stream = self._streams.get(channel)
        if stream is None or stream.meta_expire_at <= now:
            stream = _Stream(self._new_epoch())
            stream.touch(now, meta_ttl)
            self._streams[channel] = stream
        return stream

    # -- presence ----------------------------------------------------------

    async def add_presence(
        self, channel: str, client_id: str, info: ClientInfo, *, ttl: float
    ) -> None:
        now = self._clock()
        self._maybe_sweep(now)
        self._presence.setdefault(channel, {})[client_id] = (info, now + ttl)

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        entries = self._presence.get(channel)
        if entries is None:
            return
        entries.pop(client_id, None)
        if not entries:
            del self._presence[channel]

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        return dict(self._live_presence(channel))

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        live = self._live_presence(channel)
        return len(live), len({info.user for _, info in live})

    def _live_presence(self, channel: str) -> list[tuple[str, ClientInfo]]:
        entries = self._presence.get(channel)
        if not entries:
            return []
        now = self._clock()
        live = [(client, info) for client, (info, expire_at) in entries.items() if expire_at > now]
        if len(live) < len(entries):
            self._prune_presence(channel, now)
        return live

    # -- bounded memory ----------------------------------------------------

    def _maybe_sweep(self, now: float) -> None:
        # Amortized: one pass over everything at most every SWEEP_INTERVAL, so
        # a hot path pays O(1) and forgotten channels still get cleaned up.
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        self._idempotent = {k: v for k, v in self._idempotent.items() if v[1] > now}
        for channel in list(self._presence):
            self._prune_presence(channel, now)
        for channel, stream in list(self._streams.items()):
            # Size trimming happens on each write, so only age matters here.
            stream.trim(now, 0)
            if stream.meta_expire_at <= now:
                del self._streams[channel]

    def _prune_presence(self, channel: str, now: float) -> None:
        entries = self._presence[channel]
        for client in [c for c, (_, expire_at) in entries.items() if expire_at <= now]:
            del entries[client]
        if not entries:
            del self._presence[channel]
