"""What every scenario works with: one target, its servers, the worker pool, the sizes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.bench.pool import Pool, Totals
from benchmarks.bench.procstat import pin
from benchmarks.bench.servers import ServerProcess, Target
from benchmarks.bench.sizes import Sizes
from benchmarks.bench.worker import OpenSpec
from lab.redis import redis_server

__all__ = ["SETTLE", "Run", "latency_summary", "percentile"]

SETTLE = 3.0
"""Seconds a server is left alone before its memory is read."""


@dataclass
class Run:
    target: Target
    workdir: Path
    pool: Pool
    sizes: Sizes
    server_cpus: set[int] | None
    loadgen_cpus: set[int] | None = None
    progress: Callable[[str], None] = print
    maxima: dict[str, float] = field(default_factory=dict)
    """Highest delivered messages per second per fan-out shape, for the latency scenario."""

    @contextlib.asynccontextmanager
    async def servers(self, nodes: int = 1) -> AsyncIterator[list[ServerProcess]]:
        """``nodes`` fresh servers, stopped after; more than one (or a target that needs
        it) share a private Redis, pinned with them."""
        async with contextlib.AsyncExitStack() as stack:
            url = None
            if nodes > 1 or self.target.needs_redis:
                redis = stack.enter_context(redis_server())
                # The backplane is part of the server side: it shares the server's core.
                assert redis.process is not None
                pin(self.server_cpus, redis.process.pid)
                url = redis.url
            procs = self.target.servers(self.workdir, nodes=nodes, redis_url=url)
            for proc in procs:
                stack.callback(proc.stop)
                await asyncio.to_thread(proc.start, self.server_cpus)
            try:
                yield procs
            finally:
                await self.pool.close_all()

    def spec(self, urls: list[str], count: int, **kw: Any) -> OpenSpec:
        spec: OpenSpec = {
            "protocol": self.target.protocol,
            "urls": urls,
            "first": 0,
            "count": count,
            "channel_format": "",
            "group": 1,
            "concurrency": self.sizes.concurrency,
            "probe_every": 0,
            "track": False,
            "reconnect": False,
        }
        spec.update(kw)  # type: ignore[typeddict-item]
        return spec

    async def open(self, spec: OpenSpec) -> Totals:
        opened = await self.pool.open(spec)
        if opened["failed"]:
            errors = (await self.pool.stats())["errors"][:3]
            raise RuntimeError(
                f"{opened['failed']} of {spec['count']} connections failed: {errors}"
            )
        return opened


def percentile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_summary(samples: list[float]) -> dict[str, float | None]:
    return {
        "p50_ms": percentile(samples, 0.50),
        "p99_ms": percentile(samples, 0.99),
        "p999_ms": percentile(samples, 0.999),
        "samples": len(samples),
    }
