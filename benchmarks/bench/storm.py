"""The storm: one of two wsfleet nodes drained under thousands of clients.

Two nodes share a private Redis behind a real nginx configured as the Helm chart's
Ingress (:mod:`lab.nginx`). Clients connect through nginx, subscribe with recovery to
channels with history, and reconnect like an SDK when closed. A steady publisher keeps
publishing to the node that stays. Node 0 gets SIGTERM and drains (paced closes with
3001); the scenario measures how long until every client is connected and subscribed
again, the peak reconnects per second, and the messages lost (sequence gaps plus what a
client is still missing at the end) and duplicated.

Only wsfleet drains: the peers have no equivalent, so the storm has no ratios.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from typing import Any

from benchmarks.bench.publisher import Publisher
from benchmarks.bench.run import Run
from benchmarks.bench.servers import ServerProcess, WsfleetTarget
from lab.balancer import Backend
from lab.nginx import Nginx, NginxOptions
from lab.ports import node_port
from lab.redis import redis_server

__all__ = ["storm"]

STEADY = 2.0
"""Seconds of publishing before the drain and after everyone is back."""


def storm_target(run: Run) -> WsfleetTarget:
    window = run.sizes.storm_window
    return WsfleetTarget(
        {
            "channel": {"without_namespace": {"history_size": 1000, "history_ttl": 600}},
            "drain": {"readiness_delay": 0.5, "window": window, "timeout": window + 30},
        }
    )


async def _wait_back(
    run: Run, node: ServerProcess, clients: int, limit: float
) -> tuple[list[tuple[float, int]], list[float]]:
    """Until the drained node has exited and every client is ready again.

    Returns the (time, clients ready) samples and the times of every reconnect.
    """
    samples: list[tuple[float, int]] = []
    reconnects: list[float] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        stats = await run.pool.stats()
        reconnects += stats["reconnect_times"]
        samples.append((time.time(), int(stats["ready"])))
        if (
            node.process is not None
            and node.process.poll() is not None
            and samples[-1][1] >= clients
        ):
            return samples, reconnects
        await asyncio.sleep(0.2)
    raise RuntimeError(
        f"storm: {samples[-1][1] if samples else 0} of {clients} clients back after {limit:.0f} s"
    )


def _peak(times: list[float], since: float) -> int:
    return max(Counter(int(t - since) for t in times).values(), default=0)


async def storm(run: Run) -> dict[str, Any] | None:
    if not isinstance(run.target, WsfleetTarget):
        return None
    sizes, target = run.sizes, storm_target(run)
    workdir = run.workdir / "storm"
    workdir.mkdir(exist_ok=True)
    with redis_server() as redis, contextlib.ExitStack() as stack:
        procs = target.servers(workdir, nodes=2, redis_url=redis.url)
        for proc in procs:
            stack.callback(proc.stop)
            await asyncio.to_thread(proc.start, run.server_cpus)
        nginx = Nginx(NginxOptions(listen_port=node_port(), prefix=workdir / "nginx"))
        backends = [Backend(p.name, p.port, p.internal_port) for p in procs]
        await asyncio.to_thread(nginx.start_blocking, backends)
        stack.callback(nginx.stop_blocking)
        channels = [f"storm.{g}" for g in range(sizes.storm_clients // sizes.storm_group)]
        spec = run.spec(
            [nginx.ws_url], sizes.storm_clients, channel_format="storm.{g}",
            group=sizes.storm_group, track=True, reconnect=True,
        )  # fmt: skip
        await run.open(spec)
        async with Publisher(target, procs[1].publish_url, channels) as pub:
            publishing = asyncio.create_task(pub.run(sizes.storm_rate, 3600))
            try:
                await asyncio.sleep(STEADY)
                started = time.time()
                procs[0].signal(signal.SIGTERM)
                run.progress(f"storm: node 0 draining under {sizes.storm_clients} clients")
                samples, times = await _wait_back(
                    run, procs[0], sizes.storm_clients, sizes.storm_window + 60
                )
                await asyncio.sleep(STEADY)
            finally:
                publishing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publishing
        await asyncio.sleep(sizes.grace + 1)
        stats = await run.pool.stats()
        missing = await run.pool.missing(pub.seq)
        await run.pool.close_all()
    times += stats["reconnect_times"]
    back = max(times, default=started) - started
    result = {
        "clients": sizes.storm_clients,
        "drain_window_s": sizes.storm_window,
        "reconnected": len(times),
        "seconds_until_all_connected": back,
        "peak_reconnects_per_s": _peak(times, started),
        "published": pub.published,
        "publish_failures": pub.failures,
        "lost": int(stats["lost"]) + missing,
        "duplicates": int(stats["duplicates"]),
        "recovered_subscriptions": int(stats["recovered"]),
        "closes": stats["closes"],
        "drained_node_exit": procs[0].process.returncode if procs[0].process else None,
        "timeline": [(round(t - started, 2), n) for t, n in samples],
    }
    run.progress(
        f"storm: {len(times)} reconnects, all back after {back:.1f} s, "
        f"peak {result['peak_reconnects_per_s']}/s, lost {result['lost']}"
    )
    return result
