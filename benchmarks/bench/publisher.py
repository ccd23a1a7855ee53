"""The backend side of a benchmark: publishes over HTTP at a steady rate.

Messages are ``{"t": <wall clock ns>, "s": <per-channel sequence>, "p": "x…"}`` padded
to :data:`MESSAGE_SIZE` bytes, sent in batches every :data:`TICK` seconds over one
keep-alive connection (wsfleet's ``/api/batch``, a peer's ``POST /publish``: one request
carries the same messages either way). A server that answers slower than the rate
makes the publisher fall behind instead of queueing: what was really published is
counted, and deliveries are compared with that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import aiohttp

from benchmarks.bench.servers import Target

__all__ = ["MESSAGE_SIZE", "TICK", "Publisher"]

MESSAGE_SIZE = 100
"""Bytes of each message's JSON (the same for every server)."""

TICK = 0.01
MAX_BATCH_SECONDS = 0.05
"""A late tick publishes at most this many seconds' worth: the rest is skipped, not queued."""


class Publisher:
    def __init__(self, target: Target, url: str, channels: Sequence[str]) -> None:
        self.target = target
        self.url = url
        self.channels = list(channels)
        self.seq: dict[str, int] = dict.fromkeys(self.channels, 0)
        self.published = 0
        self.failures = 0
        self.last_error = ""
        """The last failed request's error, for the report ("" when none failed)."""
        self._next = 0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Publisher:
        connector = aiohttp.TCPConnector(limit=1)
        self._session = aiohttp.ClientSession(connector=connector)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def _message(self, channel: str, now: int) -> bytes:
        self.seq[channel] += 1
        head = b'{"t":%d,"s":%d,"p":"' % (now, self.seq[channel])
        return head + b"x" * max(MESSAGE_SIZE - len(head) - 2, 0) + b'"}'

    def _batch(self, n: int) -> list[tuple[str, bytes]]:
        now = time.time_ns()
        out = []
        for _ in range(n):
            channel = self.channels[self._next]
            self._next = (self._next + 1) % len(self.channels)
            out.append((channel, self._message(channel, now)))
        return out

    async def publish(self, n: int) -> None:
        assert self._session is not None
        body = self.target.publish_body(self._batch(n))
        try:
            async with self._session.post(
                self.url, data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                reply = await resp.read()
                if resp.status != 200 or b'"error"' in reply:
                    raise RuntimeError(f"HTTP {resp.status}: {reply[:200]!r}")
        except (aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
            self.failures += n
            self.last_error = f"{type(exc).__name__}: {exc}"
            return
        self.published += n

    async def run(self, rate: float, duration: float) -> float:
        """Publish at ``rate`` per second for ``duration`` seconds.

        Returns the rate really published: what was sent over ``duration``.
        """
        start = time.monotonic()
        # One message is owed at once: a low rate over a short step would otherwise
        # publish a whole message less than it should.
        before, owed = self.published + self.failures, 1.0
        # The cap keeps a fraction above a whole message, or a rate below one message
        # per tick would lose its fractions at every publish.
        cap = max(1.0, rate * MAX_BATCH_SECONDS) + 1.0
        last = start
        while (now := time.monotonic()) - start < duration:
            owed = min(owed + rate * (now - last), cap)
            last = now
            if owed >= 1:
                n = int(owed)
                owed -= n
                await self.publish(n)
            await asyncio.sleep(max(0.0, TICK - (time.monotonic() - now)))
        sent = self.published + self.failures - before
        return sent / duration
