"""The Redis broker: history in Streams, fan-out over pub/sub, presence in hashes.

Any number of nodes pointed at the same Redis (one server, a Sentinel-managed
master, or a Cluster) act as one server. What each part does:

* publish: one Lua script per publication appends it to the channel's
  stream, bumps the top offset, keeps the epoch, checks the idempotency key
  and publishes the frame carrying offset and epoch, atomically
  (:mod:`~wsfleet.brokers.redis_scripts`); concurrent publishes share round
  trips, in order (:mod:`~wsfleet.brokers.redis_pipeline`);
* fan-out: one Redis pub/sub channel per wsfleet channel, subscribed while
  the node has local subscribers; sharded pub/sub in Cluster mode
  (:mod:`~wsfleet.brokers.redis_pubsub`, the choice is measured in
  ``docs/topics/redis.md``);
* presence: per channel a hash of client infos and a sorted set of expiry
  times; each entry names its node, and reads leave out the entries of
  nodes that dropped out of the fleet registry (they expire later by TTL);
* the fleet state (registry, per-user counts, control channel) shares the
  client and the pub/sub link (:mod:`~wsfleet.brokers.redis_fleet`).

Failures raise :class:`BrokerError` within the socket timeout; no call retries
on its own. The pub/sub link heals by itself and then calls
:attr:`RedisBroker.on_resubscribed` with the channels that may have missed
publications.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from wsfleet.brokers.base import (
    Broker,
    BrokerError,
    BrokerEventHandler,
    HistoryOptions,
    HistoryPage,
    HistoryQuery,
    PresenceManager,
    PublishOptions,
    PublishResult,
)
from wsfleet.brokers.redis_codec import (
    FRAME_JOIN,
    FRAME_LEAVE,
    FRAME_PUBLICATION,
    ChannelKeys,
    decode_info,
    decode_presence,
    decode_publication,
    encode_info,
    encode_presence,
    encode_publication,
    parse_frame,
    publication_frame,
)
from wsfleet.brokers.redis_failures import FAILURES
from wsfleet.brokers.redis_fleet import SCRIPTS as FLEET_SCRIPTS
from wsfleet.brokers.redis_fleet import RedisFleet
from wsfleet.brokers.redis_pipeline import PublishPipeline
from wsfleet.brokers.redis_pubsub import PubSubLink, ShardedPubSub
from wsfleet.brokers.redis_scripts import (
    HISTORY,
    PRESENCE_ADD,
    PRESENCE_GET,
    PRESENCE_REMOVE,
    PRESENCE_STATS,
    PUBLISH,
)
from wsfleet.brokers.redis_url import RedisTarget, make_client, parse_redis_url
from wsfleet.protocol.messages import ClientInfo, Publication, StreamPosition

__all__ = ["RedisBroker", "create_redis_broker"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _new_epoch() -> str:
    # Eight URL-safe characters (never ':', which the pub/sub frame uses).
    return secrets.token_urlsafe(6)


class RedisBroker(Broker, PresenceManager):
    """Broker and presence manager of one node on a shared Redis.

    key_prefix: first part of every key and pub/sub channel (default
        "wsfleet"); fleets with different prefixes share a Redis without
        seeing each other. Must not contain braces (they are hash tags).
    node_id: this node's uid in the fleet: presence entries are tagged with
        it, and ``CLIENT LIST`` on the Redis side shows it; empty: a random one.
    socket_timeout: seconds any command may take before it raises
        :class:`BrokerError` (default 1.5).
    connect_timeout: seconds to open a connection (default 1.0).
    ping_interval: seconds of pub/sub silence before a PING; two silent
        intervals mark the link dead and start reconnecting (default 2.0).
    max_in_flight: commands awaiting Redis at once (default 64); more wait
        their turn instead of opening connections without bound.

    on_resubscribed: when set, called with the wsfleet channels whose pub/sub
        subscription was restored after an outage: their publications in the
        gap were not delivered, and the node should recover them from history.
    """

    def __init__(
        self,
        target: RedisTarget,
        *,
        key_prefix: str = "wsfleet",
        node_id: str = "",
        socket_timeout: float = 1.5,
        connect_timeout: float = 1.0,
        ping_interval: float = 2.0,
        max_in_flight: int = 64,
    ) -> None:
        _check_prefix(key_prefix)
        self.target = target
        self.on_resubscribed: Callable[[set[str]], None] | None = None
        self._prefix = key_prefix
        self._node_id = node_id or secrets.token_hex(6)
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._ping_interval = ping_interval
        self._max_in_flight = max_in_flight
        # redis-py's pool raises when it runs out of connections; waiting here
        # turns a burst of publishes into a queue instead of errors.
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._cluster = target.mode == "cluster"
        self._publish_command = "spublish" if self._cluster else "publish"
        self._handler: BrokerEventHandler | None = None
        self._client: Redis | RedisCluster | None = None
        self._scripts: dict[str, AsyncScript] = {}
        # Publishes go through one ordered pipeline (not on a Cluster, whose
        # commands go to the node owning each channel's slot).
        self._pipeline: PublishPipeline | None = None
        self._link: PubSubLink | None = None
        self._sharded: ShardedPubSub | None = None
        # Redis pub/sub channel -> wsfleet channel, for what this node wants.
        self._subscribed: dict[bytes, str] = {}
        self._closed = False
        self.fleet = RedisFleet(key_prefix, run_script=self._script, publish=self._publish_raw)
        self._control = self.fleet.keys.control.encode()

    @property
    def uid(self) -> str:
        """The node uid presence entries are tagged with."""
        return self._node_id

    # -- lifecycle ---------------------------------------------------------

    async def start(self, handler: BrokerEventHandler) -> None:
        """Connect; raises BrokerError when Redis cannot be reached in time.

        Failing at boot makes a wrong URL visible at once (the pod restarts with
        backoff) instead of a node that runs but never becomes ready.
        """
        self._handler = handler
        client = make_client(
            self.target,
            socket_timeout=self._socket_timeout,
            connect_timeout=self._connect_timeout,
            max_connections=self._max_in_flight,
            client_name=f"wsfleet:{self._node_id}",
        )
        self._client = client
        for name, lua in {**_SCRIPTS, **FLEET_SCRIPTS}.items():
            self._scripts[name] = client.register_script(lua)
        sources = {self._scripts["publish"].sha: PUBLISH}
        self._pipeline = PublishPipeline(lambda: client, sources, self._in_flight)
        link_options: dict[str, Any] = {
            "on_message": self._on_message,
            "on_resubscribed": self._resubscribed,
            "ping_interval": self._ping_interval,
            "confirm_timeout": self._socket_timeout,
        }
        try:
            if isinstance(client, RedisCluster):
                self._sharded = ShardedPubSub(client, on_state=lambda: None, **link_options)
                await self._sharded.start(wait=self._connect_timeout)
                await self._sharded.subscribe([self._control], wait=self._connect_timeout)
            else:
                self._link = PubSubLink(
                    client.connection_pool.make_connection,
                    name=self.target.service_name or "{}:{}".format(*self.target.hosts[0]),
                    on_state=self._link_state,
                    before_up=self._drop_stale_connections,
                    **link_options,
                )
                await self._link.start(wait=self._connect_timeout * 2)
                await self._link.subscribe([self._control])
        except FAILURES as exc:
            await self.close()
            raise BrokerError(f"redis unreachable: {exc}") from exc
        except BrokerError:
            await self.close()
            raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._handler = None
        self._subscribed.clear()
        link, self._link = self._link, None
        sharded, self._sharded = self._sharded, None
        if link is not None:
            await link.close()
        if sharded is not None:
            await sharded.close()
        client, self._client = self._client, None
        if client is None:
            return
        # A Sentinel-managed client does not close its sentinels' connections.
        pool = getattr(client, "connection_pool", None)
        manager = getattr(pool, "sentinel_manager", None)
        for closable in [client, *(manager.sentinels if manager is not None else ())]:
            try:
                await closable.aclose()
            except FAILURES as exc:
                logger.debug("closing a redis client failed: %r", exc)

    def unavailable_reason(self) -> str | None:
        if self._closed:
            return "broker closed"
        if self._link is not None:
            error = self._link.error
        elif self._sharded is not None:
            error = self._sharded.error
        else:
            return "broker not started"
        return None if error is None else f"redis unreachable: {error}"

    async def _drop_stale_connections(self) -> None:
        # Pooled command connections opened before an outage point at a server
        # that may be gone (restarted, failed over); without retries each
        # would fail one command after the node says it is ready again.
        client = self._client
        if isinstance(client, Redis):
            await client.connection_pool.disconnect(inuse_connections=False)

    def _link_state(self, reason: str | None) -> None:
        if reason is None:
            logger.info("redis pub/sub connected")

    # -- fan-out -----------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        redis_channel = ChannelKeys(self._prefix, channel).pubsub.encode()
        self._subscribed[redis_channel] = channel
        try:
            if self._sharded is not None:
                await self._sharded.subscribe([redis_channel], wait=self._connect_timeout)
            else:
                await self._started_link().subscribe([redis_channel])
        except BrokerError:
            self._subscribed.pop(redis_channel, None)
            raise

    async def unsubscribe(self, channel: str) -> None:
        redis_channel = ChannelKeys(self._prefix, channel).pubsub.encode()
        if self._subscribed.pop(redis_channel, None) is None:
            return
        if self._sharded is not None:
            await self._sharded.unsubscribe([redis_channel])
        elif self._link is not None:
            await self._link.unsubscribe([redis_channel])

    def _started_link(self) -> PubSubLink:
        if self._link is None:
            raise BrokerError("redis broker is not started" if not self._closed else "closed")
        return self._link

    def _on_message(self, redis_channel: bytes, frame: bytes) -> None:
        if redis_channel == self._control:
            on_control = self.fleet.on_control
            if on_control is not None and not self._closed:
                on_control(frame)
            return
        handler = self._handler
        channel = self._subscribed.get(redis_channel)
        if handler is None or channel is None:
            return
        kind, value, offset, epoch, prev, prev_offset = parse_frame(frame)
        if kind == FRAME_PUBLICATION:
            handler.on_publication(
                channel,
                decode_publication(value, offset),
                StreamPosition(offset=offset, epoch=epoch),
                decode_publication(prev, prev_offset) if prev is not None else None,
            )
        elif kind == FRAME_JOIN:
            handler.on_join(channel, decode_info(value))
        elif kind == FRAME_LEAVE:
            handler.on_leave(channel, decode_info(value))

    def _resubscribed(self, redis_channels: set[bytes]) -> None:
        callback = self.on_resubscribed
        channels = {self._subscribed[ch] for ch in redis_channels if ch in self._subscribed}
        logger.info("redis pub/sub resubscribed %d channels after an outage", len(channels))
        if callback is not None and channels:
            callback(channels)

    # -- commands ----------------------------------------------------------

    def _redis(self) -> Redis | RedisCluster:
        if self._client is None:
            raise BrokerError("redis broker is not started" if not self._closed else "closed")
        return self._client

    async def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        # A callable, not a coroutine: one created and then never awaited
        # (cancelled while waiting for a slot) would warn.
        try:
            async with self._in_flight:
                return await call()
        except FAILURES as exc:
            raise BrokerError(f"redis: {type(exc).__name__}: {exc}") from exc

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        client = self._redis()
        script = self._scripts[name]
        return await self._run(lambda: _run_script(client, script, keys, args))

    async def publish(
        self, channel: str, pub: Publication, options: PublishOptions
    ) -> PublishResult:
        keys = ChannelKeys(self._prefix, channel)
        value = encode_publication(pub)
        history = options.history
        if not history.enabled and not options.idempotency_key:
            # Nothing to keep or deduplicate: a plain publish, no script.
            await self._publish_raw(keys.pubsub, publication_frame(value))
            return PublishResult(StreamPosition())
        offset, epoch, suppressed = await self._publish_script(
            [keys.stream, keys.meta, keys.idempotency_prefix + options.idempotency_key,
             keys.pubsub],
            [
                value,
                history.size if history.enabled else 0,
                _ms(history.ttl),
                _ms(history.meta_ttl),
                _new_epoch(),
                _ms(options.idempotent_ttl) if options.idempotency_key else 0,
                1 if options.delta else 0,
                self._publish_command,
            ],
        )  # fmt: skip
        position = StreamPosition(offset=int(offset), epoch=epoch.decode())
        return PublishResult(position, suppressed=bool(suppressed))

    async def _publish_script(self, keys: list[str], args: list[Any]) -> Any:
        if self._pipeline is None:
            return await self._script("publish", keys, args)
        self._redis()
        sha = self._scripts["publish"].sha
        return await self._pipeline.call("EVALSHA", sha, len(keys), *keys, *args)

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        await self._publish_frame(channel, b"j" + encode_info(info))

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        await self._publish_frame(channel, b"l" + encode_info(info))

    async def _publish_frame(self, channel: str, frame: bytes) -> None:
        await self._publish_raw(ChannelKeys(self._prefix, channel).pubsub, frame)

    async def _publish_raw(self, redis_channel: str, frame: bytes) -> None:
        client = self._redis()
        if self._pipeline is not None:
            await self._pipeline.call(self._publish_command, redis_channel, frame)
            return
        await self._run(lambda: client.execute_command(self._publish_command, redis_channel, frame))

    # -- history -----------------------------------------------------------

    async def history(
        self, channel: str, query: HistoryQuery, history: HistoryOptions
    ) -> HistoryPage:
        keys = ChannelKeys(self._prefix, channel)
        top, epoch, flat = await self._script(
            "history",
            [keys.stream, keys.meta],
            [
                query.since.offset if query.since is not None else "",
                query.limit if query.limit >= 0 else -1,
                1 if query.reverse else 0,
                _ms(history.meta_ttl),
                _new_epoch(),
                history.size if history.enabled else 0,
            ],
        )
        pubs = [decode_publication(flat[i + 1], int(flat[i])) for i in range(0, len(flat), 2)]
        return HistoryPage(pubs, StreamPosition(offset=int(top), epoch=epoch.decode()))

    async def remove_history(self, channel: str) -> None:
        client = self._redis()
        stream = ChannelKeys(self._prefix, channel).stream
        await self._run(lambda: client.delete(stream))

    # -- presence ----------------------------------------------------------

    def _presence_keys(self, channel: str) -> list[str]:
        keys = ChannelKeys(self._prefix, channel)
        return [keys.presence_hash, keys.presence_expiry, keys.presence_users, keys.presence_nodes]

    async def add_presence(
        self, channel: str, client_id: str, info: ClientInfo, *, ttl: float
    ) -> None:
        await self._script(
            "presence_add",
            self._presence_keys(channel),
            [client_id, encode_presence(info, self._node_id), max(1, _ms(ttl)), info.user,
             self._node_id],
        )  # fmt: skip

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        await self._script("presence_remove", self._presence_keys(channel), [client_id])

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        live = await self.fleet.live_uids()
        flat = await self._script("presence_get", self._presence_keys(channel), live)
        return {flat[i].decode(): decode_presence(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        live = await self.fleet.live_uids()
        clients, users = await self._script("presence_stats", self._presence_keys(channel), live)
        return int(clients), int(users)


async def _run_script(
    client: Redis | RedisCluster, script: AsyncScript, keys: list[str], args: list[Any]
) -> Any:
    """EVALSHA; EVAL with the source (which caches it) when Redis lacks the script.

    Not redis-py's script call: after NOSCRIPT it sends SCRIPT LOAD, which on a
    Cluster goes to every master and fails while any one is down, failing a call
    to a healthy master that lacks the script (a replica that took over, a
    restarted master) for as long as another master is down.
    """
    try:
        return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await client.execute_command("EVAL", script.script, len(keys), *keys, *args)


_SCRIPTS = {
    "publish": PUBLISH,
    "history": HISTORY,
    "presence_add": PRESENCE_ADD,
    "presence_remove": PRESENCE_REMOVE,
    "presence_get": PRESENCE_GET,
    "presence_stats": PRESENCE_STATS,
}


def _check_prefix(key_prefix: str) -> None:
    # Braces would change which part of a key Redis Cluster hashes.
    if "{" in key_prefix or "}" in key_prefix:
        raise ValueError(f"key_prefix {key_prefix!r} must not contain braces")


def check_redis_config(url: str, *, key_prefix: str = "wsfleet") -> None:
    """Raise ValueError when ``url`` or ``key_prefix`` cannot make a broker; connects nothing."""
    parse_redis_url(url)
    _check_prefix(key_prefix)


def create_redis_broker(
    url: str, *, key_prefix: str = "wsfleet", node_id: str = ""
) -> tuple[RedisBroker, RedisBroker]:
    """The broker and presence manager for ``url`` (one object serves as both).

    Raises ValueError for a malformed URL; connects only in :meth:`RedisBroker.start`.
    """
    broker = RedisBroker(parse_redis_url(url), key_prefix=key_prefix, node_id=node_id)
    return broker, broker
