"""Dedicated pub/sub connections of the Redis broker, which heal themselves.

A :class:`PubSubLink` owns one connection to one Redis server and the set of
Redis channels this node wants from it. It is deliberately not redis-py's
``PubSub`` (whose hidden retries and resubscription hide outages): here a
background task reads frames, pings, and on any failure reports the outage,
backs off, reconnects, resubscribes every wanted channel, and then tells its
owner which channels came back, so the node can recover what was published
while nobody listened.

``subscribe`` returns only once Redis confirmed the subscription: a
publication made after it returns reaches this node.

The Cluster variant (:class:`ShardedPubSub`) keeps one link per master and
routes each channel to the master owning its slot (``SSUBSCRIBE`` must talk to
that node). Nothing here knows what the frames mean.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from wsfleet.brokers.base import BrokerError
from wsfleet.brokers.redis_failures import refresh_slots

__all__ = ["PubSubLink", "ShardedPubSub"]

logger = logging.getLogger(__name__)

MessageCallback = Callable[[bytes, bytes], None]
"""Called with (Redis channel, frame) for every message."""

ResubscribedCallback = Callable[[set[bytes]], None]
"""Called with the Redis channels subscribed again after an outage."""

StateCallback = Callable[[str | None], None]
"""Called with the reason the link is down, or None when it is up again."""

# A SUBSCRIBE with thousands of channels is one command of a few hundred KB;
# batches keep each one small enough not to stall the server.
_BATCH = 500
_BARRIER = b"wsfleet-resubscribed"
# Re-routing channels to another master: seconds to wait for its connection,
# and bounds of the jittered, doubling delay between attempts.
_REROUTE_WAIT = 2.0
_REROUTE_RETRY = (0.05, 2.0)


class PubSubLink:
    """One self-healing pub/sub connection.

    make_connection: builds a fresh, unconnected redis-py connection.
    sharded: use SSUBSCRIBE/SUNSUBSCRIBE (Redis Cluster) instead of SUBSCRIBE.
    before_up: awaited after a reconnection, before the link reports itself up
        (the node's readiness follows it): the owner drops what the outage
        left stale. None: nothing to do.
    ping_interval: seconds of silence after which the link sends PING; a
        second silent interval declares the connection dead (default 2.0).
    confirm_timeout: seconds ``subscribe`` waits for Redis's confirmation
        before raising :class:`BrokerError` (default 2.0).
    backoff_min, backoff_max: bounds of the jittered, doubling delay between
        reconnection attempts (defaults 0.05 and 2.0 seconds).
    """

    def __init__(
        self,
        make_connection: Callable[[], AbstractConnection],
        *,
        name: str,
        on_message: MessageCallback,
        on_resubscribed: ResubscribedCallback,
        on_state: StateCallback,
        on_lost: Callable[[bytes], None] | None = None,
        before_up: Callable[[], Awaitable[None]] | None = None,
        sharded: bool = False,
        ping_interval: float = 2.0,
        confirm_timeout: float = 2.0,
        backoff_min: float = 0.05,
        backoff_max: float = 2.0,
    ) -> None:
        self.name = name
        self.channels: set[bytes] = set()
        self._make_connection = make_connection
        self._on_message = on_message
        self._on_resubscribed = on_resubscribed
        self._on_state = on_state
        self._on_lost = on_lost
        self._before_up = before_up
        self._sub, self._unsub = (
            (b"ssubscribe", b"sunsubscribe")
            if sharded
            else (
                b"subscribe",
                b"unsubscribe",
            )
        )
        self._msg = b"smessage" if sharded else b"message"
        self._sharded = sharded
        self._ping_interval = ping_interval
        self._confirm_timeout = confirm_timeout
        self._backoff = (backoff_min, backoff_max)
        self._conn: AbstractConnection | None = None
        self._up = asyncio.Event()
        self._error: str | None = "not connected yet"
        # Confirmations arrive in command order, one per channel per command.
        self._pending: dict[bytes, deque[asyncio.Future[None]]] = {}
        # Unsubscribes we asked for and Redis has not confirmed yet; any other
        # unsubscribe confirmation was Redis's own idea.
        self._unsub_pending: Counter[bytes] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.ever_up = False

    @property
    def error(self) -> str | None:
        """Why the link is down, or None while it is up."""
        return self._error

    async def start(self, *, wait: float) -> None:
        """Start the link and wait up to ``wait`` seconds for the first connection.

        Raises BrokerError when it did not come up in time; it keeps trying.
        """
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"wsfleet-pubsub-{self.name}")
        try:
            await asyncio.wait_for(self._up.wait(), wait)
        except TimeoutError:
            raise BrokerError(f"redis unreachable: {self._error}") from None

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn = self._conn
        self._drop_connection("closed")
        if conn is not None:
            await _disconnect(conn)

    # -- channels -----------------------------------------------------------

    async def subscribe(self, channels: Iterable[bytes]) -> None:
        """Subscribe and wait for Redis to confirm; BrokerError when down or slow."""
        new = list(channels)
        self.channels.update(new)
        conn = self._conn
        if conn is None:
            self.channels.difference_update(new)
            raise BrokerError(f"redis unreachable: {self._error}")
        loop = asyncio.get_running_loop()
        futures = []
        for ch in new:
            fut: asyncio.Future[None] = loop.create_future()
            self._pending.setdefault(ch, deque()).append(fut)
            futures.append(fut)
        try:
            for batch in self._batches(new):
                await conn.send_command(self._sub, *batch, check_health=False)
            async with asyncio.timeout(self._confirm_timeout):
                await asyncio.gather(*futures)
        except (RedisError, OSError, TimeoutError, BrokerError) as exc:
            # Not subscribed as far as the caller knows; a late confirmation
            # is harmless because frames of unwanted channels are dropped.
            self.channels.difference_update(new)
            for fut in futures:
                fut.cancel()
            if isinstance(exc, BrokerError):
                raise
            raise BrokerError(f"redis subscribe failed: {exc!r}") from exc

    async def unsubscribe(self, channels: Iterable[bytes]) -> None:
        """Forget channels; never raises (a dead connection forgot them already)."""
        gone = [ch for ch in channels if ch in self.channels]
        self.channels.difference_update(gone)
        conn = self._conn
        if conn is None or not gone:
            return
        self._unsub_pending.update(gone)
        try:
            for batch in self._batches(gone):
                await conn.send_command(self._unsub, *batch, check_health=False)
        except (RedisError, OSError) as exc:
            logger.debug("unsubscribe on %s failed: %r", self.name, exc)

    def _batches(self, channels: list[bytes]) -> list[list[bytes]]:
        """The channels of each (un)subscribe command, in order within a slot."""
        if not self._sharded:
            return [channels[i : i + _BATCH] for i in range(0, len(channels), _BATCH)]
        # SSUBSCRIBE and SUNSUBSCRIBE take channels of one slot only: Redis
        # answers CROSSSLOT to the whole command otherwise.
        by_slot: dict[int, list[bytes]] = {}
        for ch in channels:
            by_slot.setdefault(key_slot(ch), []).append(ch)
        return [
            group[i : i + _BATCH]
            for group in by_slot.values()
            for i in range(0, len(group), _BATCH)
        ]

    # -- the reader task ----------------------------------------------------

    async def _run(self) -> None:
        delay = self._backoff[0]
        outage = False
        while not self._closed:
            conn = self._make_connection()
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
                wanted = sorted(self.channels)
                for batch in self._batches(wanted):
                    await conn.send_command(self._sub, *batch, check_health=False)
                if outage and wanted:
                    # PING is answered after every SUBSCRIBE before it: when
                    # its reply arrives, all of them are active.
                    await conn.send_command(b"ping", _BARRIER, check_health=False)
                if outage and self._before_up is not None:
                    await self._before_up()
                self._conn = conn
                self._error = None
                self._up.set()
                self.ever_up = True
                self._on_state(None)
                delay = self._backoff[0]
                await self._read(conn, set(wanted) if outage else None)
            except asyncio.CancelledError:
                # close(): the connection may not be published in self._conn yet.
                await _disconnect(conn)
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self._drop_connection(reason)
                await _disconnect(conn)
                if not outage:
                    logger.warning("redis pub/sub %s lost: %s", self.name, reason)
                outage = True
                self._on_state(reason)
            # Jitter spreads a fleet's reconnections after a Redis restart.
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self._backoff[1])

    async def _read(self, conn: AbstractConnection, resubscribed: set[bytes] | None) -> None:
        pinged = False
        sub, unsub, msg = self._sub, self._unsub, self._msg
        while True:
            reply: Any = await conn.read_response(
                timeout=self._ping_interval, disconnect_on_error=False, push_request=True
            )
            if reply is None:
                # Silence: a half-open TCP connection looks exactly like this.
                if pinged:
                    raise ConnectionError("no reply to PING")
                await conn.send_command(b"ping", check_health=False)
                pinged = True
                continue
            pinged = False
            if not isinstance(reply, list):
                # RESP3 answers PING in subscribed mode with a plain reply;
                # RESP2 with a ["pong", payload] array.
                reply = [b"pong", reply if reply != b"PONG" else b""]
            kind = reply[0]
            if kind == msg:
                if reply[1] in self.channels:
                    try:
                        self._on_message(reply[1], reply[2])
                    except Exception:
                        logger.exception("pub/sub message handler failed")
            elif kind == sub:
                waiters = self._pending.get(reply[1])
                if waiters:
                    fut = waiters.popleft()
                    if not waiters:
                        del self._pending[reply[1]]
                    if not fut.done():
                        fut.set_result(None)
            elif kind == unsub:
                # Redis unsubscribed us without being asked when a Cluster
                # slot moved to another master: let the owner re-route it.
                ch = reply[1]
                if self._unsub_pending[ch] > 0:
                    self._unsub_pending[ch] -= 1
                    if not self._unsub_pending[ch]:
                        del self._unsub_pending[ch]
                elif ch in self.channels and self._on_lost is not None:
                    self.channels.discard(ch)
                    self._on_lost(ch)
            elif kind == b"pong" and resubscribed is not None and reply[1] == _BARRIER:
                done, resubscribed = resubscribed & self.channels, None
                if done:
                    try:
                        self._on_resubscribed(done)
                    except Exception:
                        logger.exception("on_resubscribed callback failed")

    def _drop_connection(self, reason: str) -> None:
        """Mark the link down and fail what waits on it; the caller closes the socket."""
        self._up.clear()
        self._error = reason
        self._conn = None
        for waiters in self._pending.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(BrokerError(f"redis unreachable: {reason}"))
        self._pending.clear()
        self._unsub_pending.clear()


async def _disconnect(conn: AbstractConnection) -> None:
    # nowait: close the socket without waiting for a peer that may be gone.
    with contextlib.suppress(Exception):
        await conn.disconnect(nowait=True)


class ShardedPubSub:
    """Sharded pub/sub over a Redis Cluster: one :class:`PubSubLink` per master.

    A channel is re-routed when its master stops serving its slot: Redis says
    so when the slot is resharded (it unsubscribes the channel), and nobody
    says so when the master dies and a replica takes over, so a link that is
    down re-reads the slot map at each failed reconnection and hands its
    channels to their new master. Either way the owner is told, through
    ``on_resubscribed``, that those channels may have missed publications.
    """

    def __init__(
        self,
        cluster: RedisCluster,
        *,
        on_message: MessageCallback,
        on_resubscribed: ResubscribedCallback,
        on_state: Callable[[], None],
        **link_options: Any,
    ) -> None:
        self._cluster = cluster
        self._on_message = on_message
        self._on_resubscribed = on_resubscribed
        self._on_state = on_state
        self._link_options = link_options
        self.links: dict[str, PubSubLink] = {}
        # Channels to subscribe again on the master now serving them.
        self._lost: set[bytes] = set()
        self._rerouter: asyncio.Task[None] | None = None
        # Why the last attempt to re-route them failed; None while none did.
        self._reroute_error: str | None = None
        # Down links whose slot map check is running (one at a time per link).
        self._checking: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def _link_for(self, channel: bytes) -> PubSubLink:
        if self._closed:
            raise BrokerError("redis broker closed")
        try:
            node = self._cluster.get_node_from_key(channel.decode())
        except RedisClusterException as exc:  # SlotNotCoveredError
            raise BrokerError(f"redis cluster: {exc}") from exc
        if node is None:
            raise BrokerError(f"redis cluster: no node owns the slot of {channel!r}")
        link = self.links.get(node.name)
        if link is None:
            name = node.name
            link = PubSubLink(
                lambda: node.connection_class(**node.connection_kwargs),
                name=name,
                sharded=True,
                on_message=self._on_message,
                on_resubscribed=self._on_resubscribed,
                on_state=lambda reason: self._link_state(name, reason),
                on_lost=lambda channel: self._reroute({channel}),
                **self._link_options,
            )
            self.links[name] = link
        return link

    @property
    def error(self) -> str | None:
        for link in self.links.values():
            if link.error is not None:
                return f"{link.name}: {link.error}"
        if self._reroute_error is not None:
            # Only once an attempt failed: a resharding moves channels one
            # slot at a time, and readiness should not flap with each.
            return f"moving channels to a new master: {self._reroute_error}"
        return None

    async def start(self, *, wait: float) -> None:
        await self._cluster.initialize()

    async def subscribe(self, channels: Iterable[bytes], *, wait: float) -> None:
        by_link: dict[str, list[bytes]] = {}
        for ch in channels:
            link = self._link_for(ch)
            if not link.ever_up:
                await link.start(wait=wait)
            by_link.setdefault(link.name, []).append(ch)
        await asyncio.gather(*(self.links[n].subscribe(chs) for n, chs in by_link.items()))

    async def unsubscribe(self, channels: Iterable[bytes]) -> None:
        for ch in channels:
            self._lost.discard(ch)
            for link in self.links.values():
                if ch in link.channels:
                    await link.unsubscribe([ch])

    # -- following the slots --------------------------------------------------

    def _link_state(self, name: str, reason: str | None) -> None:
        self._on_state()
        if reason is not None and name not in self._checking and not self._closed:
            self._checking.add(name)
            self._spawn(self._follow_failover(name))

    async def _follow_failover(self, name: str) -> None:
        """Hand the channels of a down link to the masters now serving their slots."""
        try:
            await refresh_slots(self._cluster)
            link = self.links.get(name)
            if link is None or link.error is None:
                return
            moved = {ch for ch in link.channels if self._owner(ch) not in (name, None)}
            if moved:
                await link.unsubscribe(moved)  # down: it only forgets them
                self._reroute(moved)
            if not link.channels:
                # Nothing left on it: stop dialling a master that may be gone
                # for good (and stop reporting the node unready because of it).
                del self.links[name]
                await link.close()
        finally:
            self._checking.discard(name)

    def _owner(self, channel: bytes) -> str | None:
        try:
            node = self._cluster.get_node_from_key(channel.decode())
        except RedisClusterException:
            return None
        return None if node is None else node.name

    def _reroute(self, channels: set[bytes]) -> None:
        self._lost |= channels
        if self._rerouter is None and not self._closed:
            self._rerouter = self._spawn(self._reroute_lost())

    async def _reroute_lost(self) -> None:
        """Subscribe lost channels where their slots are now, until all are back."""
        delay = _REROUTE_RETRY[0]
        try:
            while self._lost:
                await refresh_slots(self._cluster)
                lost, self._lost = self._lost, set()
                try:
                    await self.subscribe(lost, wait=_REROUTE_WAIT)
                except BrokerError as exc:
                    # The new master is not reachable yet, or the map is not
                    # updated yet: keep them, try again.
                    logger.debug("re-routing %d channels failed: %s", len(lost), exc)
                    self._reroute_error = str(exc)
                    self._lost |= lost
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, _REROUTE_RETRY[1])
                    continue
                self._reroute_error = None
                try:
                    self._on_resubscribed(lost)
                except Exception:
                    logger.exception("on_resubscribed callback failed")
        finally:
            self._rerouter = None
            self._reroute_error = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        links, self.links = list(self.links.values()), {}
        for link in links:
            await link.close()
