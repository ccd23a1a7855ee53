"""One load generator process: thousands of lean picows connections on one uvloop loop.

The controlling process (:mod:`benchmarks.bench.pool`) sends commands over a pipe and
gets one reply per command:

- ``("open", spec)``: open ``spec["count"]`` connections (see :class:`OpenSpec`), at most
  ``concurrency`` handshakes in flight, each until it is *ready* (connected and every
  subscription acknowledged); replies with counts and timings.
- ``("stats", reset)``: counters, and the latency and reconnect samples gathered since
  the last ``stats`` (which are then dropped); ``reset`` also zeroes ``received``.
- ``("missing", seqs)``: with ``track``, how many messages each connection is still
  short of, given the last sequence number published on each channel.
- ``("close", None)``: close every connection with 1000 and wait until they are gone.
- ``("exit", None)``.

With ``reconnect`` a connection the server closes comes back after a jittered backoff
and, with ``track``, resubscribes with recovery from the last offset and epoch it saw,
as an SDK would; ``lost`` counts the sequence numbers it never got.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Iterable
from multiprocessing.connection import Connection
from typing import Any, TypedDict

import uvloop
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from benchmarks.bench.procstat import pin, raise_nofile
from benchmarks.bench.protocols import PROTOCOLS, ClientProtocol

__all__ = ["Conn", "OpenSpec", "Worker", "worker_main"]

HANDSHAKE_TIMEOUT = 20.0
READY_TIMEOUT = 30.0
OPEN_ATTEMPTS = 3
"""A connection that fails to open is tried again after a pause, as a real client would:
a server slow to accept thousands of handshakes is measured, not failed."""
RETRY_PAUSE = 1.0
RECONNECT_MIN = 0.2
RECONNECT_MAX = 5.0
MAX_ERRORS = 20


class OpenSpec(TypedDict):
    protocol: str
    urls: list[str]
    first: int
    """Global index of this worker's first connection (channels and probes use it)."""
    count: int
    channel_format: str
    """``str.format`` with ``i`` (global index) and ``g`` (``i // group``); "": no channel."""
    group: int
    concurrency: int
    probe_every: int
    """Every n-th connection (by global index) is a latency probe; 0: none."""
    track: bool
    reconnect: bool


class Conn(WSListener):
    """One client connection; reused across its reconnects."""

    def __init__(self, worker: Worker, index: int, url: str, channels: list[str]) -> None:
        super().__init__()
        self.worker = worker
        self.index = index
        self.url = url
        self.channels = channels
        self.probe = False
        self.track = False
        self.transport: WSTransport | None = None
        self.pending = 0
        self.ready = False
        self.closing = False
        self.waiter: asyncio.Future[bool] | None = None
        self.attempt = 0
        self.last_s: int | None = None
        self.offset = 0
        self.epoch = ""

    # picows callbacks
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.worker.proto.on_open(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.TEXT or kind == WSMsgType.BINARY:
            self.worker.proto.on_frame(self, frame.get_payload_as_bytes())
        elif kind == WSMsgType.CLOSE:
            self.worker.closes[frame.get_close_code().value] += 1
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.worker.on_disconnected(self)

    # used by the protocols
    def send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.send(WSMsgType.TEXT, data)

    def acked(self, *, final: bool = False) -> None:
        self.pending = 0 if final else self.pending - 1
        if self.pending <= 0 and not self.ready:
            self.ready = True
            self.worker.on_ready(self)

    def failed(self, message: str) -> None:
        self.worker.error(f"connection {self.index}: {message}")
        self._settle(False)

    def see(self, seqs: Iterable[int]) -> None:
        """Sequence numbers of one channel, in arrival order: gaps are lost messages."""
        for s in seqs:
            last = self.last_s
            if last is None or s == last + 1:
                self.last_s = s
            elif s <= last:
                self.worker.duplicates += 1
            else:
                self.worker.lost += s - last - 1
                self.last_s = s

    def _settle(self, ok: bool) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(ok)


class Worker:
    """The connections of one process and their counters."""

    def __init__(self) -> None:
        self.proto: ClientProtocol = PROTOCOLS["wsfleet"]
        self.conns: list[Conn] = []
        self.reconnect = False
        self.connected = 0
        self.ready = 0
        self.received = 0
        self.failed = 0
        self.recovered = 0
        self.lost = 0
        self.duplicates = 0
        self.closes: Counter[int] = Counter()
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self.reconnect_times: list[float] = []

    def error(self, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)

    def on_ready(self, conn: Conn) -> None:
        self.ready += 1
        if conn.attempt:
            self.reconnect_times.append(time.time())
        conn.attempt = 0
        conn._settle(True)

    def on_disconnected(self, conn: Conn) -> None:
        self.connected -= 1
        if conn.ready:
            self.ready -= 1
        conn.ready = False
        conn.transport = None
        conn._settle(False)
        if self.reconnect and not conn.closing:
            self._schedule(conn)

    def _schedule(self, conn: Conn) -> None:
        delay = random.uniform(RECONNECT_MIN, min(RECONNECT_MAX, RECONNECT_MIN * 2**conn.attempt))
        conn.attempt += 1
        loop = asyncio.get_running_loop()
        loop.call_later(delay, lambda: loop.create_task(self._reconnect(conn)))

    async def _reconnect(self, conn: Conn) -> None:
        if not await self._dial(conn):
            self._schedule(conn)

    async def _dial(self, conn: Conn) -> bool:
        try:
            await ws_connect(
                lambda: conn,
                conn.url,
                websocket_handshake_timeout=HANDSHAKE_TIMEOUT,
                enable_auto_pong=True,
                read_buffer_init_size=4096,
            )
        except Exception as exc:
            self.failed += 1
            self.error(f"connection {conn.index}: {type(exc).__name__}: {exc}")
            return False
        self.connected += 1
        return True

    async def _open_one(self, conn: Conn, sem: asyncio.Semaphore) -> bool:
        async with sem:
            for attempt in range(OPEN_ATTEMPTS):
                if attempt:
                    await asyncio.sleep(RETRY_PAUSE)
                conn.waiter = asyncio.get_running_loop().create_future()
                try:
                    if not await self._dial(conn):
                        continue
                    return await asyncio.wait_for(conn.waiter, READY_TIMEOUT)
                except TimeoutError:
                    self.error(f"connection {conn.index}: not ready in {READY_TIMEOUT:.0f} s")
                    return False
                finally:
                    conn.waiter = None
            return False

    def _conn(self, spec: OpenSpec, i: int) -> Conn:
        fmt, urls = spec["channel_format"], spec["urls"]
        channels = [fmt.format(i=i, g=i // max(spec["group"], 1))] if fmt else []
        conn = Conn(self, i, urls[i % len(urls)], channels)
        conn.probe = bool(spec["probe_every"]) and i % spec["probe_every"] == 0
        conn.track = spec["track"]
        return conn

    async def open(self, spec: OpenSpec) -> dict[str, Any]:
        self.proto = PROTOCOLS[spec["protocol"]]
        self.reconnect = spec["reconnect"]
        conns = [self._conn(spec, i) for i in range(spec["first"], spec["first"] + spec["count"])]
        self.conns.extend(conns)
        sem = asyncio.Semaphore(spec["concurrency"])
        started = time.time()
        results = await asyncio.gather(*(self._open_one(c, sem) for c in conns))
        return {
            "opened": sum(results),
            "failed": len(results) - sum(results),
            "started": started,
            "finished": time.time(),
        }

    def stats(self, reset: bool) -> dict[str, Any]:
        out = {
            "connected": self.connected,
            "ready": self.ready,
            "received": self.received,
            "failed": self.failed,
            "recovered": self.recovered,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "closes": dict(self.closes),
            "errors": list(self.errors),
            "latencies": self.latencies,
            "reconnect_times": self.reconnect_times,
        }
        self.latencies, self.reconnect_times = [], []
        if reset:
            self.received = 0
        return out

    def missing(self, seqs: dict[str, int]) -> dict[str, Any]:
        short = 0
        for conn in self.conns:
            last = conn.last_s or 0
            short += sum(max(0, seqs.get(ch, 0) - last) for ch in conn.channels)
        return {"missing": short}

    async def close(self) -> dict[str, Any]:
        for conn in self.conns:
            conn.closing = True
            if conn.transport is not None:
                conn.transport.send_close(WSCloseCode.OK)
                conn.transport.disconnect()
        deadline = time.monotonic() + 10
        while self.connected > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # callbacks of many transports: polling is simplest
        left = self.connected
        self.conns = []
        return {"left": left}


async def _serve(pipe: Connection) -> None:
    worker = Worker()
    loop = asyncio.get_running_loop()
    while True:
        command, arg = await loop.run_in_executor(None, pipe.recv)
        if command == "exit":
            pipe.send({})
            return
        try:
            if command == "open":
                reply: dict[str, Any] = await worker.open(arg)
            elif command == "stats":
                reply = worker.stats(bool(arg))
            elif command == "missing":
                reply = worker.missing(arg)
            elif command == "close":
                reply = await worker.close()
            else:
                reply = {"error": f"unknown command {command!r}"}
        except Exception as exc:  # the controller reports it; the worker stays usable
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        pipe.send(reply)


def worker_main(pipe: Connection, cpus: set[int] | None) -> None:
    """Entry point of a worker process."""
    pin(cpus)
    raise_nofile()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_serve(pipe))
