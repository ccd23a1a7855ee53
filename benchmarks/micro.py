"""Hot-path micro-benchmarks: codecs, hub fan-out, outbox coalescing.

What a node does per message, measured in-process and without I/O, so a
regression on the hot path shows up in seconds instead of in a load test:

* codec: encode one publication push (a ~100-byte and a 1 KiB JSON payload)
  with the JSON and the Protobuf codec; decode a frame holding a subscribe, a
  publish and a ping command;
* hub fan-out: one publication handed to the real :class:`~wsfleet.core.hub.Hub`
  with N local subscribers (1, 100, 1000) that record the bytes they are given;
  the cost per delivered message, encoding once per publication included. One
  more row puts a real :class:`~wsfleet.core.outbox.Outbox` behind each
  subscriber and flushes it, which is all a node does per delivery before the
  socket write;
* outbox coalescing: M small replies pushed into the real Outbox in one loop
  turn, then flushed to a fake send: cost per message and frames written.

Each figure is the median of several repeats timed with ``time.perf_counter_ns``
(the garbage collector is off while timing, as in ``timeit``); each repeat runs
enough iterations to last a few milliseconds. Nothing here is a test: no
number is compared with a threshold (tests/benchmarks only smoke-runs it).

Usage: python -m benchmarks.micro [--quick] [--out DIR]
Writes DIR/micro.json (results and machine) and DIR/micro.md (the table);
DIR defaults to benchmarks/results.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import wsfleet
from wsfleet.brokers.memory import MemoryBroker
from wsfleet.core.hub import Hub, Subscription, SubState
from wsfleet.core.outbox import Outbox
from wsfleet.core.stats import NodeStats
from wsfleet.protocol.codec import JSON, PROTOBUF, Codec
from wsfleet.protocol.messages import (
    ClientInfo,
    Command,
    PingRequest,
    Publication,
    PublishRequest,
    Push,
    Reply,
    StreamPosition,
    SubscribeRequest,
    raw,
)

RESULTS = Path(__file__).resolve().parent / "results"

SMALL_PAYLOAD = b'{"type":"chat","room":"lobby","user":"u-1042","text":"see you at the standup","ts":1763719906}'
"""A typical small JSON publication, about 100 bytes."""

LARGE_PAYLOAD = b'{"type":"doc","body":"' + b"x" * (1024 - 24) + b'"}'
"""A 1 KiB JSON publication."""

CHANNEL = "chat:lobby"

Run = Callable[[int], int]
"""Runs ``loops`` iterations of one benchmark and returns the timed nanoseconds."""


@dataclass
class Settings:
    repeats: int
    """Timed repeats per benchmark; the median is reported."""
    target_ns: int
    """Iterations per repeat are doubled until one repeat lasts at least this long."""
    max_loops: int
    fanout_sizes: tuple[int, ...] = (1, 100, 1000)
    outbox_sizes: tuple[int, ...] = (10, 100, 1000)


FULL = Settings(repeats=7, target_ns=20_000_000, max_loops=1 << 20)
QUICK = Settings(repeats=3, target_ns=1_000_000, max_loops=16)


@dataclass
class Bench:
    """One benchmark: ``run(loops)`` does ``loops * units`` operations."""

    name: str
    group: str
    unit: str
    """What one operation is (a push, a command, a delivery, a message)."""
    units: int
    """Operations per iteration (commands per frame, deliveries per publication ...)."""
    run: Run
    extra: Callable[[], dict[str, Any]] = field(default=dict)
    """Facts checked after timing (copies delivered, frames written ...)."""


def measure(bench: Bench, settings: Settings) -> dict[str, Any]:
    loops = 1
    while loops < settings.max_loops and timed(bench.run, loops) < settings.target_ns:
        loops *= 2
    samples = [timed(bench.run, loops) for _ in range(settings.repeats)]
    ns_per_op = statistics.median(samples) / (loops * bench.units)
    return {
        "name": bench.name,
        "group": bench.group,
        "unit": bench.unit,
        "ns_per_op": round(ns_per_op, 1),
        "ops_per_s": round(1e9 / ns_per_op) if ns_per_op > 0 else None,
        "loops": loops,
        "ops_per_repeat": loops * bench.units,
        "repeats": settings.repeats,
        "samples_ns": samples,
        **bench.extra(),
    }


def timed(run: Run, loops: int) -> int:
    gc.collect()
    gc.disable()
    try:
        return run(loops)
    finally:
        gc.enable()


# -- codec --------------------------------------------------------------------


def publication_push(payload: bytes) -> Reply:
    pub = Publication(
        data=raw(payload),
        offset=123_456,
        info=ClientInfo(user="u-1042", client="3f1c0e9e-8a47-4f8e-9d55-2a1b7c6d9e01"),
    )
    return Reply(push=Push(channel=CHANNEL, pub=pub))


def typical_commands() -> list[Command]:
    return [
        Command(id=1, subscribe=SubscribeRequest(channel=CHANNEL, recover=True, offset=41)),
        Command(id=2, publish=PublishRequest(channel=CHANNEL, data=raw(SMALL_PAYLOAD))),
        Command(id=3, ping=PingRequest()),
    ]


def encode_bench(codec: Codec, label: str, payload: bytes) -> Bench:
    reply = publication_push(payload)
    encode = codec.encode_reply
    size = len(encode(reply))

    def run(loops: int) -> int:
        t0 = time.perf_counter_ns()
        for _ in range(loops):
            encode(reply)
        return time.perf_counter_ns() - t0

    return Bench(
        f"encode push {label} ({codec.name})",
        "codec",
        "push",
        1,
        run,
        lambda: {"payload_bytes": len(payload), "encoded_bytes": size},
    )


def decode_bench(codec: Codec) -> Bench:
    commands = typical_commands()
    frame = codec.separator.join(codec.encode_command(c) for c in commands)
    decode = codec.decode_commands
    decoded = decode(frame)
    if decoded != commands:
        raise RuntimeError(f"{codec.name}: commands do not survive a round trip")

    def run(loops: int) -> int:
        t0 = time.perf_counter_ns()
        for _ in range(loops):
            decode(frame)
        return time.perf_counter_ns() - t0

    return Bench(
        f"decode subscribe+publish+ping ({codec.name})",
        "codec",
        "command",
        len(commands),
        run,
        lambda: {"frame_bytes": len(frame), "commands_per_frame": len(commands)},
    )


# -- hub fan-out ----------------------------------------------------------------


class FakeSession:
    """A subscriber as the hub sees it (see ``Subscriber`` in core/hub.py).

    It records what it is given and does nothing else, so the timing is the hub's.
    """

    __slots__ = ("codec", "gaps", "sent")

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.sent: list[bytes] = []
        self.gaps = 0

    def send_encoded(self, data: bytes) -> None:
        self.sent.append(data)

    def on_insufficient_state(self, sub: Subscription) -> None:
        self.gaps += 1


class OutboxSession:
    """A subscriber whose bytes go through a real Outbox to a counting send."""

    __slots__ = ("codec", "frames", "gaps", "outbox")

    def __init__(self, codec: Codec, loop: FakeLoop, stats: NodeStats) -> None:
        self.codec = codec
        self.frames = 0
        self.gaps = 0
        self.outbox = Outbox(
            send=self._send,
            separator=codec.separator,
            max_bytes=4 * 1024 * 1024,
            max_frame_bytes=64 * 1024,
            on_overflow=self._overflow,
            call_soon=loop.call_soon,
            stats=stats,
        )

    def _send(self, frame: bytes) -> None:
        self.frames += 1

    def _overflow(self) -> None:
        raise RuntimeError("benchmark outbox overflowed")

    def send_encoded(self, data: bytes) -> None:
        self.outbox.push(data)

    def on_insufficient_state(self, sub: Subscription) -> None:
        self.gaps += 1


class FakeLoop:
    """``call_soon`` that queues callbacks; :meth:`turn` ends the loop turn."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.pending.append(callback)

    def turn(self) -> None:
        pending, self.pending = self.pending, []
        for callback in pending:
            callback()


def subscribed_hub(sessions: list[Any]) -> Hub:
    hub = Hub(MemoryBroker(), NodeStats())

    async def subscribe_all() -> None:
        for session in sessions:
            sub = Subscription(session, CHANNEL)
            await hub.add(sub)
            sub.state = SubState.SUBSCRIBED

    asyncio.run(subscribe_all())
    return hub


class Publications:
    """Live publications with ever-growing offsets, built outside the timed region."""

    def __init__(self) -> None:
        self.offset = 0

    def take(self, count: int) -> list[tuple[Publication, StreamPosition]]:
        out = []
        for _ in range(count):
            self.offset += 1
            out.append(
                (
                    Publication(data=raw(SMALL_PAYLOAD), offset=self.offset),
                    StreamPosition(offset=self.offset, epoch="bench"),
                )
            )
        return out


def fanout_bench(subscribers: int, codec: Codec) -> Bench:
    sessions = [FakeSession(codec) for _ in range(subscribers)]
    hub = subscribed_hub(sessions)
    pubs = Publications()
    last = {"loops": 0}

    def run(loops: int) -> int:
        for session in sessions:
            session.sent.clear()
        batch = pubs.take(loops)
        on_publication = hub.on_publication
        t0 = time.perf_counter_ns()
        for pub, position in batch:
            on_publication(CHANNEL, pub, position, None)
        elapsed = time.perf_counter_ns() - t0
        last["loops"] = loops
        return elapsed

    def extra() -> dict[str, Any]:
        loops = last["loops"]
        delivered = sum(len(s.sent) for s in sessions)
        distinct = {id(data) for s in sessions for data in s.sent}
        return {
            "subscribers": subscribers,
            "publications": loops,
            "copies_per_publication": delivered / loops,
            "encodings_per_publication": len(distinct) / loops,
            "gaps": sum(s.gaps for s in sessions),
        }

    return Bench(
        f"hub fan-out N={subscribers} ({codec.name})",
        "hub",
        "delivery",
        subscribers,
        run,
        extra,
    )


def fanout_outbox_bench(subscribers: int, codec: Codec) -> Bench:
    loop = FakeLoop()
    stats = NodeStats()
    sessions = [OutboxSession(codec, loop, stats) for _ in range(subscribers)]
    hub = subscribed_hub(sessions)
    pubs = Publications()
    last = {"loops": 0, "frames": 0, "messages": 0}

    def run(loops: int) -> int:
        batch = pubs.take(loops)
        frames0, messages0 = stats.frames_out, stats.messages_out
        on_publication, turn = hub.on_publication, loop.turn
        t0 = time.perf_counter_ns()
        for pub, position in batch:
            on_publication(CHANNEL, pub, position, None)
            turn()  # one publication per loop turn: every outbox flushes one frame
        elapsed = time.perf_counter_ns() - t0
        last.update(
            loops=loops,
            frames=stats.frames_out - frames0,
            messages=stats.messages_out - messages0,
        )
        return elapsed

    def extra() -> dict[str, Any]:
        loops = last["loops"]
        return {
            "subscribers": subscribers,
            "publications": loops,
            "copies_per_publication": last["messages"] / loops,
            "frames_per_publication": last["frames"] / loops,
            "gaps": sum(s.gaps for s in sessions),
        }

    return Bench(
        f"hub+outbox fan-out N={subscribers} ({codec.name})",
        "hub",
        "delivery",
        subscribers,
        run,
        extra,
    )


# -- outbox coalescing -----------------------------------------------------------


def outbox_bench(messages: int, codec: Codec) -> Bench:
    loop = FakeLoop()
    stats = NodeStats()
    written: list[int] = []
    item = codec.encode_reply(publication_push(SMALL_PAYLOAD))
    outbox = Outbox(
        send=lambda frame: written.append(len(frame)),
        separator=codec.separator,
        max_bytes=4 * 1024 * 1024,
        max_frame_bytes=64 * 1024,
        on_overflow=lambda: None,
        call_soon=loop.call_soon,
        stats=stats,
    )
    last = {"loops": 0, "frames": 0, "messages": 0}

    def run(loops: int) -> int:
        written.clear()
        frames0, messages0 = stats.frames_out, stats.messages_out
        push, turn = outbox.push, loop.turn
        t0 = time.perf_counter_ns()
        for _ in range(loops):
            for _ in range(messages):
                push(item)
            turn()
        elapsed = time.perf_counter_ns() - t0
        last.update(
            loops=loops,
            frames=stats.frames_out - frames0,
            messages=stats.messages_out - messages0,
        )
        return elapsed

    def extra() -> dict[str, Any]:
        loops = last["loops"]
        frames = last["frames"] / loops
        return {
            "messages_per_flush": messages,
            "message_bytes": len(item),
            "messages_sent": last["messages"] / loops,
            "frames_written": frames,
            "coalescing_ratio": round(messages / frames, 1) if frames else None,
            "overflows": stats.outbox_overflows,
        }

    return Bench(
        f"outbox push+flush M={messages} ({codec.name})",
        "outbox",
        "message",
        messages,
        run,
        extra,
    )


# -- running and reporting ----------------------------------------------------------


def benches(settings: Settings) -> list[Bench]:
    out = []
    for codec in (JSON, PROTOBUF):
        out.append(encode_bench(codec, "100 B", SMALL_PAYLOAD))
        out.append(encode_bench(codec, "1 KiB", LARGE_PAYLOAD))
    out.extend(decode_bench(codec) for codec in (JSON, PROTOBUF))
    out.extend(fanout_bench(n, JSON) for n in settings.fanout_sizes)
    out.append(fanout_bench(settings.fanout_sizes[-1], PROTOBUF))
    out.append(fanout_outbox_bench(settings.fanout_sizes[-1], JSON))
    out.extend(outbox_bench(m, JSON) for m in settings.outbox_sizes)
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "wsfleet": wsfleet.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def note(row: dict[str, Any]) -> str:
    if row["group"] == "codec":
        if "encoded_bytes" in row:
            return f"{row['encoded_bytes']} B on the wire"
        return f"{row['commands_per_frame']} commands, {row['frame_bytes']} B frame"
    if row["group"] == "hub":
        text = f"copies per publication: {row['copies_per_publication']:g}"
        if "frames_per_publication" in row:
            text += f", frames: {row['frames_per_publication']:g}"
        return text
    return (
        f"frames per flush: {row['frames_written']:g} for {row['messages_per_flush']} "
        f"messages of {row['message_bytes']} B"
    )


def table(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{meta['date']} · {meta['cpu']} ({meta['cpus']} CPUs) · Python {meta['python']} · "
        f"wsfleet {meta['wsfleet']} · {meta['platform']}",
        "",
        "| benchmark | ns per op | ops/s | op | notes |",
        "|---|---:|---:|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['ns_per_op']:,.0f} | {row['ops_per_s']:,} | "
            f"{row['unit']} | {note(row)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny runs, for the smoke test")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    meta = machine()
    rows = []
    for bench in benches(settings):
        row = measure(bench, settings)
        rows.append(row)
        print(f"{row['name']}: {row['ns_per_op']:,.0f} ns per {row['unit']}", flush=True)
    md = table(meta, rows)
    args.out.mkdir(parents=True, exist_ok=True)
    settings_out = {
        "quick": args.quick,
        "repeats": settings.repeats,
        "target_ns": settings.target_ns,
    }
    (args.out / "micro.json").write_text(
        json.dumps({"meta": {**meta, **settings_out}, "results": rows}, indent=2) + "\n"
    )
    (args.out / "micro.md").write_text(md)
    print()
    print(md, end="")


if __name__ == "__main__":
    main()
