"""The load generator's worker processes, driven from the controlling process.

Connections are split evenly over the workers; replies are merged so that a scenario
sees one set of counters. Workers are separate processes so that 20,000+ connections
fit in each one's descriptor limit and no single event loop holds them all; they all
run on the load generator's CPUs (:func:`benchmarks.bench.procstat.split_cpus`).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections import Counter
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from benchmarks.bench.worker import OpenSpec, worker_main

__all__ = ["Pool", "Totals"]


class Totals(dict[str, Any]):
    """Merged ``stats`` replies: numbers summed, samples concatenated."""

    @classmethod
    def merge(cls, replies: list[dict[str, Any]]) -> Totals:
        out = cls()
        closes: Counter[int] = Counter()
        for reply in replies:
            for key, value in reply.items():
                if key == "closes":
                    closes.update({int(k): v for k, v in value.items()})
                elif isinstance(value, list):
                    out.setdefault(key, []).extend(value)
                else:
                    out[key] = out.get(key, 0) + value
        out["closes"] = dict(closes)
        return out


class Pool:
    """``size`` worker processes pinned to ``cpus`` (None: not pinned)."""

    def __init__(self, size: int, cpus: set[int] | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._procs: list[BaseProcess] = []
        for _ in range(size):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(theirs, cpus), daemon=True)
            proc.start()
            self._pipes.append(ours)
            self._procs.append(proc)

    @property
    def size(self) -> int:
        return len(self._pipes)

    @property
    def pids(self) -> list[int]:
        """The worker processes, and this one (which publishes)."""
        return [os.getpid(), *(p.pid for p in self._procs if p.pid is not None)]

    async def _call(self, pipe: Connection, command: str, arg: Any) -> dict[str, Any]:
        pipe.send((command, arg))
        reply: dict[str, Any] = await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        if "error" in reply:
            raise RuntimeError(f"load generator worker failed on {command}: {reply['error']}")
        return reply

    async def open(self, spec: OpenSpec) -> Totals:
        """Open ``spec["count"]`` connections spread over the workers, starting at ``first``."""
        share, extra = divmod(spec["count"], self.size)
        calls, first = [], spec["first"]
        for n, pipe in enumerate(self._pipes):
            count = share + (1 if n < extra else 0)
            if count:
                calls.append(self._call(pipe, "open", {**spec, "first": first, "count": count}))
            first += count
        replies = await asyncio.gather(*calls)
        totals = Totals.merge(
            [{k: v for k, v in r.items() if k in ("opened", "failed")} for r in replies]
        )
        totals["started"] = min(r["started"] for r in replies) if replies else 0.0
        totals["finished"] = max(r["finished"] for r in replies) if replies else 0.0
        return totals

    async def stats(self, *, reset: bool = False) -> Totals:
        return Totals.merge(
            await asyncio.gather(*(self._call(p, "stats", reset) for p in self._pipes))
        )

    async def missing(self, seqs: dict[str, int]) -> int:
        """Messages tracking connections never got, given each channel's last sequence."""
        replies = await asyncio.gather(*(self._call(p, "missing", seqs) for p in self._pipes))
        return sum(int(r["missing"]) for r in replies)

    async def close_all(self) -> int:
        replies = await asyncio.gather(*(self._call(p, "close", None) for p in self._pipes))
        return sum(int(r["left"]) for r in replies)

    def shutdown(self) -> None:
        for pipe in self._pipes:
            try:
                pipe.send(("exit", None))
            except OSError:
                continue
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
