"""Publications sent to Redis in call order, many per round trip (auto-pipelining).

A publish awaited one at a time costs a round trip each: a batch of API publications
(or many backends publishing at once) then runs at one publication per round trip,
whatever Redis could take. Here every publish made while a pipeline is in flight
joins the next one, which goes out in a single write as soon as the previous one has
answered. Only one pipeline is in flight at a time, on one connection, so Redis sees
the publishes in the order they were made and per-channel order holds; the batch
grows with the load and stays at one command when there is none.

Scripts go as ``EVALSHA``; a Redis that lost its scripts (restarted, failed over)
answers ``NOSCRIPT``, and those commands are sent once more as ``EVAL`` with the
script's source, which caches it on that server.

On a Cluster, a connection error makes the pipeline re-read the slot map before its
next round trip: redis-py does that after a failed single command, not after a failed
pipeline, so a master replaced by its replica would otherwise be dialled forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from wsfleet.brokers.base import BrokerError
from wsfleet.brokers.redis_failures import CONNECTION_ERRORS, FAILURES, refresh_slots

__all__ = ["PublishPipeline"]

MAX_BATCH = 1024
"""Commands in one pipeline at most; the rest wait for the next round trip."""

Command = tuple[Any, ...]


class PublishPipeline:
    """FIFO of commands for one Redis client; :meth:`call` returns each one's reply.

    ``client`` gives the current client (it may change after a reconnect);
    ``scripts`` maps a script's SHA1 to its source, to send it after NOSCRIPT.
    ``guard`` is entered around each round trip (the broker's in-flight bound).
    """

    def __init__(
        self,
        client: Callable[[], Redis | RedisCluster],
        scripts: dict[str, str],
        guard: asyncio.Semaphore,
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._client = client
        self._scripts = scripts
        self._guard = guard
        self._max_batch = max_batch
        self._queue: list[tuple[Command, asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def call(self, *command: Any) -> Any:
        """Send ``command`` after every command called before it; its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((command, future))
        if self._sender is None:
            self._sender = loop.create_task(self._send_all())
        return await future

    async def _send_all(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        live = [(cmd, fut) for cmd, fut in batch if not fut.done()]  # skip the cancelled
        if not live:
            return
        replies: list[Any]
        try:
            async with self._guard:
                replies = await self._round_trip([cmd for cmd, _ in live])
                missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
                if missing:
                    again = await self._round_trip([self._with_source(live[i][0]) for i in missing])
                    for i, reply in zip(missing, again, strict=True):
                        replies[i] = reply
        except FAILURES as exc:
            # Every failure becomes the callers' error: one let through would
            # end the sender and leave every caller waiting forever.
            replies = [exc] * len(live)
        for (_, fut), reply in zip(live, replies, strict=True):
            if fut.done():
                continue
            if isinstance(reply, Exception):
                fut.set_exception(BrokerError(f"redis: {type(reply).__name__}: {reply}"))
            else:
                fut.set_result(reply)
        # A Cluster pipeline returns a node's connection error as the reply of
        # each of its commands, or raises it: either way, re-read the map.
        if any(isinstance(r, CONNECTION_ERRORS) for r in replies):
            # After the callers got their error: the commands queued meanwhile
            # wait for the new map instead of failing against the old one too.
            await refresh_slots(self._client())

    async def _round_trip(self, commands: list[Command]) -> list[Any]:
        pipe = self._client().pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))

    def _with_source(self, evalsha: Command) -> Command:
        # EVAL caches the script on the node that runs it. Not SCRIPT LOAD: on a
        # Cluster it goes to every master, and fails while any one is down.
        return ("EVAL", self._scripts[evalsha[1]], *evalsha[2:])
