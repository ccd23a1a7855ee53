"""The hub: which local connections subscribe to which channel, and fan-out to them.

The hub is the broker's event handler on a node. For each publication it
encodes the push once per wire format (and once per delta variant), never
once per subscriber, and offers the same bytes to every subscriber's outbox.

It also keeps the broker subscribed to exactly the channels that have local
subscribers: the first local subscriber subscribes the node, the last one to
leave unsubscribes it (serialised per channel, so a quick leave-and-join can
not leave the node deaf).

Each subscription tracks the stream position it has delivered (a publication
its tags filter leaves out still moves the position). A live
publication whose offset skips ahead, or that comes from another epoch, means
this node missed something (a broker outage, a lost pub/sub message): the
subscription is told it has insufficient state and resubscribes with recovery,
instead of silently skipping.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterator
from typing import Protocol

import msgspec

from wsfleet.brokers.base import Broker
from wsfleet.core.delta import delta_or_full, wire_payload
from wsfleet.core.stats import NodeStats
from wsfleet.core.tags_filter import TagsFilter
from wsfleet.protocol.codec import Codec
from wsfleet.protocol.messages import (
    ClientInfo,
    Join,
    Leave,
    Publication,
    Push,
    Reply,
    StreamPosition,
)


class SubState(enum.Enum):
    SUBSCRIBING = "subscribing"
    """Subscribe in progress: live publications are buffered until the reply is out."""
    SUBSCRIBED = "subscribed"


class Subscriber(Protocol):
    """A connection as the hub sees it."""

    codec: Codec

    def send_encoded(self, data: bytes) -> None:
        """Queue encoded bytes for the connection."""

    def on_insufficient_state(self, sub: Subscription) -> None:
        """``sub`` missed publications; the connection must make its client resync."""


class Subscription:
    """One connection's subscription to one channel, with its delivered position."""

    __slots__ = (
        "buffer",
        "channel",
        "delta",
        "delta_base",
        "epoch",
        "join_leave",
        "offset",
        "plain",
        "positioned",
        "state",
        "subscriber",
        "tags_filter",
    )

    def __init__(
        self,
        subscriber: Subscriber,
        channel: str,
        *,
        join_leave: bool = False,
        delta: bool = False,
        positioned: bool = False,
        tags_filter: TagsFilter | None = None,
    ) -> None:
        """``tags_filter``: deliver only publications whose tags match; None: all."""
        self.subscriber = subscriber
        self.channel = channel
        self.state = SubState.SUBSCRIBING
        self.join_leave = join_leave
        self.delta = delta
        self.positioned = positioned
        self.offset = 0
        self.epoch = ""
        self.delta_base = -1
        """Offset of the publication the client holds as delta base; -1: none."""
        self.tags_filter = tags_filter
        self.plain = not delta and tags_filter is None
        """Neither delta nor a tags filter: every publication goes out in full."""
        self.buffer: list[tuple[Publication, StreamPosition, PublicationFanout]] = []


# Cache keys of the delta variants; the full encoding is keyed by the codec's
# name alone. Plain strings, not an enum in a tuple: this lookup runs once per
# subscriber and publication, and hashing an enum is Python code (benchmarks/micro.py
# measured the fan-out at less than half the cost per delivery without it).
_DELTA = "/delta"
_FULL_FOR_DELTA = "/full-for-delta"


class PublicationFanout:
    """Encodings of one publication, made lazily, once per (wire format, variant)."""

    __slots__ = ("_cache", "_is_delta", "_patch", "channel", "prev", "pub")

    def __init__(self, channel: str, pub: Publication, prev: Publication | None) -> None:
        self.channel = channel
        self.pub = pub
        self.prev = prev
        self._cache: dict[str, bytes] = {}
        self._patch: bytes | None = None
        self._is_delta = False

    def full(self, codec: Codec) -> bytes:
        key = codec.name
        data = self._cache.get(key)
        if data is None:
            data = self._encode(codec, self.pub)
            self._cache[key] = data
        return data

    def for_delta_subscriber(self, codec: Codec, base_offset: int) -> bytes:
        """The push for a subscriber with delta negotiated whose base is ``base_offset``."""
        prev = self.prev
        use_delta = prev is not None and prev.offset == base_offset and base_offset > 0
        key = codec.name + (_DELTA if use_delta else _FULL_FOR_DELTA)
        data = self._cache.get(key)
        if data is None:
            data = self._encode(codec, self._delta_pub(codec, use_delta))
            self._cache[key] = data
        return data

    def _delta_pub(self, codec: Codec, use_delta: bool) -> Publication:
        pub = self.pub
        payload = bytes(pub.data)
        is_delta = False
        if use_delta and self.prev is not None:
            if self._patch is None:
                self._patch, self._is_delta = delta_or_full(bytes(self.prev.data), payload)
            payload, is_delta = self._patch, self._is_delta
        data = wire_payload(payload, binary=codec.binary)
        return msgspec.structs.replace(pub, data=data, delta=is_delta)

    def _encode(self, codec: Codec, pub: Publication) -> bytes:
        return codec.encode_reply(Reply(push=Push(channel=self.channel, pub=pub)))


def deliver(
    sub: Subscription, pub: Publication, position: StreamPosition, fan: PublicationFanout
) -> None:
    """Hand one publication to one subscribed connection, checking its position."""
    offset = pub.offset
    if offset:
        if sub.epoch and position.epoch != sub.epoch:
            if sub.positioned:
                sub.subscriber.on_insufficient_state(sub)
                return
            sub.epoch = position.epoch
            sub.offset = 0
        if offset <= sub.offset:
            return  # already delivered (recovered, or a duplicate after resubscribe)
        if sub.positioned and sub.offset and offset != sub.offset + 1:
            sub.subscriber.on_insufficient_state(sub)
            return
        sub.offset = offset
        if not sub.epoch:
            sub.epoch = position.epoch
    if sub.plain:
        sub.subscriber.send_encoded(fan.full(sub.subscriber.codec))
    else:
        _deliver_shaped(sub, pub, fan)


def _deliver_shaped(sub: Subscription, pub: Publication, fan: PublicationFanout) -> None:
    # Off the common path, so that a plain subscriber pays one check for both features.
    tags_filter = sub.tags_filter
    if tags_filter is not None and not tags_filter(pub.tags):
        return  # the position moved past it: filtered out is not missed
    codec = sub.subscriber.codec
    if sub.delta:
        sub.subscriber.send_encoded(fan.for_delta_subscriber(codec, sub.delta_base))
        sub.delta_base = pub.offset if pub.offset else -1
    else:
        sub.subscriber.send_encoded(fan.full(codec))


class Hub:
    """Local subscriptions by channel; the node's broker event handler."""

    def __init__(self, broker: Broker, stats: NodeStats) -> None:
        self._broker = broker
        self._stats = stats
        self._channels: dict[str, dict[Subscriber, Subscription]] = {}
        self._broker_channels: set[str] = set()
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    # -- bookkeeping ----------------------------------------------------------

    @property
    def num_channels(self) -> int:
        return len(self._channels)

    @property
    def num_subscriptions(self) -> int:
        return sum(len(s) for s in self._channels.values())

    def channels(self) -> Iterator[str]:
        return iter(self._channels)

    def num_subscribers(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))

    def subscribers(self, channel: str) -> list[Subscription]:
        return list(self._channels.get(channel, {}).values())

    async def add(self, sub: Subscription) -> None:
        """Register ``sub`` and make sure the node receives its channel.

        Raises BrokerError (and leaves nothing registered) when the broker
        cannot subscribe.
        """
        self._channels.setdefault(sub.channel, {})[sub.subscriber] = sub
        try:
            await self._reconcile(sub.channel)
        except BaseException:
            self._discard(sub)
            raise

    async def remove(self, sub: Subscription) -> None:
        """Unregister ``sub``; the last one out unsubscribes the node."""
        if self._discard(sub):
            await self._reconcile(sub.channel)

    def _discard(self, sub: Subscription) -> bool:
        subs = self._channels.get(sub.channel)
        if subs is None or subs.get(sub.subscriber) is not sub:
            return False
        del subs[sub.subscriber]
        if not subs:
            del self._channels[sub.channel]
        return True

    async def _reconcile(self, channel: str) -> None:
        # One reconciliation per channel at a time: the broker's state follows
        # whether local subscribers exist *now*, whatever order calls came in.
        entry = self._locks.get(channel)
        if entry is None:
            entry = self._locks[channel] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                want = channel in self._channels
                have = channel in self._broker_channels
                if want and not have:
                    await self._broker.subscribe(channel)
                    self._broker_channels.add(channel)
                elif have and not want:
                    self._broker_channels.discard(channel)
                    await self._broker.unsubscribe(channel)
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[channel]

    def broker_channels(self) -> set[str]:
        """Channels the broker is subscribed to for this node."""
        return set(self._broker_channels)

    def resync_behind(self, channel: str, top: StreamPosition) -> int:
        """Make positioned subscribers that are behind ``top`` recover; return how many.

        Called after the broker restored a lost delivery path: what was
        published meanwhile never reached this node, and no later publication
        may come to reveal the gap.
        """
        behind = [
            sub
            for sub in self.subscribers(channel)
            if sub.positioned
            and sub.state is SubState.SUBSCRIBED
            and (sub.epoch != top.epoch or sub.offset < top.offset)
        ]
        for sub in behind:
            sub.subscriber.on_insufficient_state(sub)
        return len(behind)

    # -- broker events ----------------------------------------------------------

    def on_publication(
        self,
        channel: str,
        pub: Publication,
        position: StreamPosition,
        prev: Publication | None,
    ) -> None:
        self._stats.publications_received += 1
        subs = self._channels.get(channel)
        if not subs:
            return
        fan = PublicationFanout(channel, pub, prev)
        subscribing = SubState.SUBSCRIBING  # once: an enum attribute read is not free
        for sub in list(subs.values()):
            if sub.state is subscribing:
                sub.buffer.append((pub, position, fan))
            else:
                deliver(sub, pub, position, fan)

    def on_join(self, channel: str, info: ClientInfo) -> None:
        self._presence_event(channel, Push(channel=channel, join=Join(info=info)))

    def on_leave(self, channel: str, info: ClientInfo) -> None:
        self._presence_event(channel, Push(channel=channel, leave=Leave(info=info)))

    def _presence_event(self, channel: str, push: Push) -> None:
        subs = self._channels.get(channel)
        if not subs:
            return
        encoded: dict[str, bytes] = {}
        reply = Reply(push=push)
        for sub in subs.values():
            if not sub.join_leave or sub.state is not SubState.SUBSCRIBED:
                continue
            codec = sub.subscriber.codec
            data = encoded.get(codec.name)
            if data is None:
                data = encoded[codec.name] = codec.encode_reply(reply)
            sub.subscriber.send_encoded(data)
