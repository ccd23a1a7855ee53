"""How big a benchmark run is: the full run, and a smoke run of a few seconds."""

from __future__ import annotations

import resource
from dataclasses import dataclass, replace

__all__ = ["FULL", "SMOKE", "Sizes", "fit_descriptors"]

SPARE_DESCRIPTORS = 1_000
"""Descriptors a server keeps for its listeners, logs, Redis and the like."""


@dataclass(frozen=True, kw_only=True)
class Sizes:
    idle: tuple[int, ...] = (5_000, 10_000, 20_000)
    """Connected clients at which the server's RSS is read (after a reading at 0)."""
    fanout: tuple[int, ...] = (1_000, 5_000)
    """Subscribers of the one channel in the one-channel fan-out shapes."""
    many: tuple[int, int] = (5_000, 5)
    """(clients, subscribers per channel) of the many-channels fan-out shape."""
    start_deliveries: float = 20_000.0
    """Deliveries per second offered by a ramp's first step."""
    factor: float = 1.5
    """Each ramp step publishes this many times faster than the one before."""
    max_rate: float = 200_000.0
    """Publications per second a ramp never goes beyond (a bound, not a target)."""
    step_seconds: float = 3.0
    grace: float = 1.0
    """Seconds after a step's last publication for its deliveries to arrive."""
    probe_every: int = 50
    """One connection in this many measures latency."""
    latency_shape: tuple[int, int] = (1_000, 10)
    """(clients, subscribers per channel) of the latency scenario: the time to write one
    publication to many sockets is fan-out cost, measured by the fan-out scenario."""
    fractions: tuple[float, ...] = (0.25, 0.5, 0.75)
    """Fractions of the measured maximum at which latency is measured."""
    latency_seconds: float = 5.0
    connect: int = 5_000
    concurrency: int = 100
    """Handshakes in flight per worker process."""
    storm_clients: int = 5_000
    storm_group: int = 50
    """Clients per channel in the storm."""
    storm_rate: float = 100.0
    """Publications per second during the storm."""
    storm_window: float = 10.0
    """The drained node's ``drain.window``, seconds."""
    workers: int = 4
    """Load generator processes."""
    scenario_limit: float = 900.0
    """Seconds one scenario of one target may take; past it, it is recorded as failed."""


FULL = Sizes()

SMOKE = Sizes(
    idle=(20, 40),
    fanout=(20,),
    many=(20, 5),
    start_deliveries=200.0,
    factor=2.0,
    max_rate=40.0,
    step_seconds=0.3,
    grace=0.3,
    probe_every=5,
    latency_shape=(20, 5),
    fractions=(0.5,),
    latency_seconds=0.3,
    connect=40,
    concurrency=10,
    storm_clients=40,
    storm_group=5,
    storm_rate=40.0,
    storm_window=1.0,
    workers=2,
    scenario_limit=120.0,
)
"""Seconds, not minutes: proves every scenario still runs (make test), measures nothing."""


def fit_descriptors(sizes: Sizes, *, hard: int | None = None) -> tuple[Sizes, str]:
    """``sizes`` with no idle step above what the server's descriptor limit allows.

    A process may raise its soft limit only up to the hard one (raising that needs
    privileges a container often lacks), and every connection is a descriptor.
    ``hard`` is that limit (default None: this process's). Returns the sizes and a
    note saying what was capped ("" if nothing).
    """
    if hard is None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return sizes, ""
    cap = hard - SPARE_DESCRIPTORS
    if max(sizes.idle) <= cap:
        return sizes, ""
    idle = tuple(sorted({min(n, cap) for n in sizes.idle}))
    note = f"idle steps capped at {cap:,} clients: the descriptor limit (ulimit -Hn) is {hard:,}"
    return replace(sizes, idle=idle), note
