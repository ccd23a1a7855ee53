"""The scenarios: idle, fan-out, latency, connect and storm.

Each takes a :class:`Run` (one target, its working directory, the worker pool, the
sizes) and returns a JSON-able dict. Servers are started and stopped by the scenario
so that every one begins from a fresh process; the server is measured from outside
(:mod:`benchmarks.bench.procstat`).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.bench.procstat import cpu_seconds, rss_bytes
from benchmarks.bench.publisher import Publisher
from benchmarks.bench.run import SETTLE, Run, latency_summary
from benchmarks.bench.servers import ServerProcess
from benchmarks.bench.sizes import Sizes
from benchmarks.bench.storm import storm

__all__ = ["SCENARIOS", "Shape", "ramp", "shapes"]

SATURATED = 0.95
"""A step whose deliveries (after the grace) fall below this share of the expected is saturated."""

BEHIND = 0.9
"""A step whose publisher managed less than this share of the rate is saturated too: the
server answers publications too slowly (the tolerance covers the publisher's ticks)."""


def _slope(points: list[tuple[int, int]]) -> float:
    """Least-squares bytes per connection through (connections, RSS) points."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


# -- idle ------------------------------------------------------------------------------


async def idle(run: Run) -> dict[str, Any]:
    """Server RSS with 0, 5k, 10k, 20k connected clients, one subscription each."""
    async with run.servers() as (server,):
        await asyncio.sleep(SETTLE)
        points = [(0, rss_bytes(server.pid))]
        opened = 0
        for n in run.sizes.idle:
            spec = run.spec([server.ws_url], n - opened, first=opened, channel_format="idle.{i}")
            await run.open(spec)
            opened = n
            await asyncio.sleep(SETTLE)
            points.append((n, rss_bytes(server.pid)))
            run.progress(f"idle: {n} clients, RSS {points[-1][1] / 2**20:.1f} MiB")
    base = points[0][1]
    return {
        "points": [{"clients": n, "rss_bytes": rss} for n, rss in points],
        "base_rss_bytes": base,
        "bytes_per_connection": _slope(points),
        "bytes_per_connection_at": {str(n): (rss - base) / n for n, rss in points if n},
    }


# -- fan-out ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    key: str
    subscribers: int
    group: int
    """Subscribers per channel (equal to ``subscribers``: one channel)."""

    @property
    def channels(self) -> list[str]:
        if self.group >= self.subscribers:
            return ["fan"]
        return [f"many.{g}" for g in range(self.subscribers // self.group)]

    @property
    def channel_format(self) -> str:
        return "fan" if self.group >= self.subscribers else "many.{g}"


def shapes(sizes: Sizes) -> list[Shape]:
    out = [Shape(f"one-channel-{n}", n, n) for n in sizes.fanout]
    n, g = sizes.many
    out.append(Shape(f"{n // g}-channels-of-{g}", n, g))
    return out


async def _step(
    run: Run, pub: Publisher, pids: list[int], rate: float, fanout: int, seconds: float
) -> dict[str, Any]:
    await run.pool.stats(reset=True)
    ours = run.pool.pids
    cpu0, published0, t0 = sum(map(cpu_seconds, pids)), pub.published, time.monotonic()
    # Each process on its own: the controlling process's descendants include the servers.
    gen0 = sum(cpu_seconds(p, tree=False) for p in ours)
    real_rate = await pub.run(rate, seconds)
    during = await run.pool.stats()
    elapsed = time.monotonic() - t0
    cpu1, gen1 = sum(map(cpu_seconds, pids)), sum(cpu_seconds(p, tree=False) for p in ours)
    await asyncio.sleep(run.sizes.grace)
    after = await run.pool.stats()
    expected = (pub.published - published0) * fanout
    delivered = after["received"]
    return {
        "rate": rate,
        "published_per_s": real_rate,
        "delivered_per_s": during["received"] / elapsed,
        "delivered_share": delivered / expected if expected else 0.0,
        "cpu_per_delivery_us": (cpu1 - cpu0) / during["received"] * 1e6
        if during["received"]
        else None,
        "server_cpu_share": (cpu1 - cpu0) / elapsed,
        # Near 1 per load generator core, the figure is the load generator's limit as
        # much as the server's: the report marks it.
        "loadgen_cpu_share": (gen1 - gen0) / elapsed / max(len(run.loadgen_cpus or {0}), 1),
        "publish_failures": pub.failures,
        "publish_error": pub.last_error,
        "latency": latency_summary(during["latencies"] + after["latencies"]),
    }


async def _flush(run: Run, limit: float = 15.0) -> None:
    """Wait until the clients stop receiving (a saturated server's backlog has drained)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        if not (await run.pool.stats(reset=True))["received"]:
            return


async def ramp(run: Run, procs: list[ServerProcess], shape: Shape) -> list[dict[str, Any]]:
    """Publish at rates rising by :attr:`Sizes.factor` until the server saturates."""
    sizes, steps = run.sizes, []
    rate = sizes.start_deliveries / shape.group
    async with Publisher(run.target, procs[0].publish_url, shape.channels) as pub:
        while rate <= sizes.max_rate:
            step = await _step(
                run, pub, [p.pid for p in procs], rate, shape.group, sizes.step_seconds
            )
            steps.append(step)
            run.progress(
                f"{shape.key}: {rate:,.0f} pub/s -> {step['delivered_per_s']:,.0f} deliveries/s "
                f"({step['delivered_share']:.0%}), p99 {step['latency']['p99_ms']} ms"
            )
            # Saturated: deliveries fall behind, or the server answers publications too
            # slowly for the rate (the publisher then falls behind instead of queueing).
            behind = step["published_per_s"] < BEHIND * rate
            if step["delivered_share"] < SATURATED or behind or step["publish_failures"]:
                break
            rate *= sizes.factor
        await _flush(run)
    return steps


async def fanout(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for shape in shapes(run.sizes):
        async with run.servers() as procs:
            spec = run.spec(
                [procs[0].ws_url], shape.subscribers, channel_format=shape.channel_format,
                group=shape.group, probe_every=run.sizes.probe_every,
            )  # fmt: skip
            await run.open(spec)
            steps = await ramp(run, procs, shape)
        best = max((s["delivered_per_s"] for s in steps), default=0.0)
        run.maxima[shape.key] = best
        at_best = max(steps, key=lambda s: s["delivered_per_s"]) if steps else {}
        out[shape.key] = {
            "subscribers": shape.subscribers,
            "per_channel": shape.group,
            "steps": steps,
            "max_delivered_per_s": best,
            "cpu_per_delivery_us_at_max": at_best.get("cpu_per_delivery_us"),
            "loadgen_cpu_share_at_max": at_best.get("loadgen_cpu_share"),
        }
    return out


# -- latency ---------------------------------------------------------------------------


async def _latency_at(run: Run, nodes: int) -> dict[str, Any]:
    n, group = run.sizes.latency_shape
    shape = Shape(f"latency-{nodes}-node", n, group)
    async with run.servers(nodes) as procs:
        spec = run.spec(
            [p.ws_url for p in procs], n, channel_format=shape.channel_format,
            group=group, probe_every=run.sizes.probe_every,
        )  # fmt: skip
        await run.open(spec)
        steps = await ramp(run, procs, shape)
        best = max((s["delivered_per_s"] for s in steps), default=0.0)
        fractions = {}
        async with Publisher(run.target, procs[0].publish_url, shape.channels) as pub:
            for fraction in run.sizes.fractions:
                rate = best * fraction / group
                pids = [p.pid for p in procs]
                step = await _step(run, pub, pids, rate, group, run.sizes.latency_seconds)
                fractions[f"{fraction:g}"] = step
                run.progress(f"latency {nodes} node(s) at {fraction:.0%}: {step['latency']}")
    return {
        "clients": n,
        "per_channel": group,
        "max_delivered_per_s": best,
        "ramp": steps,
        "at": fractions,
    }


async def latency(run: Run) -> dict[str, Any]:
    out = {"one_node": await _latency_at(run, 1)}
    if run.target.two_node:
        out["two_nodes"] = await _latency_at(run, 2)
    return out


# -- connect ---------------------------------------------------------------------------


async def connect(run: Run) -> dict[str, Any]:
    """Handshakes plus the protocol's session set-up (no subscription), as fast as accepted."""
    async with run.servers() as (server,):
        cpu0 = cpu_seconds(server.pid)
        opened = await run.open(run.spec([server.ws_url], run.sizes.connect))
        cpu = cpu_seconds(server.pid) - cpu0
    seconds = opened["finished"] - opened["started"]
    run.progress(f"connect: {run.sizes.connect} in {seconds:.2f} s")
    return {
        "connections": run.sizes.connect,
        "concurrency": run.sizes.concurrency * run.pool.size,
        "seconds": seconds,
        "per_second": run.sizes.connect / seconds if seconds else None,
        "cpu_per_connect_us": cpu / run.sizes.connect * 1e6,
    }


SCENARIOS: dict[str, Callable[[Run], Any]] = {
    "idle": idle,
    "fanout": fanout,
    "latency": latency,
    "connect": connect,
    "storm": storm,
}
"""In the order they run; storm applies to wsfleet only (peers have no drain)."""
