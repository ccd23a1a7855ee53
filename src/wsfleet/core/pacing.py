"""Closing connections at a steady pace: the drain and the rebalancer share it.

``total`` closes spread evenly over ``window`` seconds: by ``elapsed`` seconds
into the window, ``ceil(total * elapsed / window)`` of them are due. The closer
wakes at jittered ticks and acts on whatever is due, so the reconnect rate the
rest of the fleet sees is about ``total / window`` per second whatever the tick
and however late a busy event loop wakes it; a window of 0 acts on all at once.
The arithmetic is pure; :func:`run_paced` is the loop, with its clock and its
waiting injected.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

MIN_TICK = 0.05
MAX_TICK = 1.0
TICKS_PER_WINDOW = 100


def due(total: int, window: float, elapsed: float) -> int:
    """How many of ``total`` closes are due ``elapsed`` seconds into a ``window``."""
    if window <= 0 or elapsed >= window:
        return total
    if elapsed <= 0:
        return 0
    return min(total, math.ceil(total * elapsed / window))


def tick(window: float, jitter: float) -> float:
    """Seconds to the next batch; ``jitter`` in [0, 1) spreads ticks by ±50%."""
    base = min(MAX_TICK, max(MIN_TICK, window / TICKS_PER_WINDOW))
    return base * (0.5 + jitter)


async def run_paced(
    items: list[T],
    window: float,
    act: Callable[[T], None],
    *,
    monotonic: Callable[[], float],
    wait: Callable[[float], Awaitable[None]],
    hurry: Callable[[], bool] = lambda: False,
    stop: Callable[[], bool] = lambda: False,
    rng: Callable[[], float] = random.random,
) -> None:
    """Call ``act`` on every item (taken from the end of ``items``) at a steady pace.

    ``hurry``: when true, everything left is due at once. ``stop``: checked
    before each act; when true the rest is left alone. ``wait(seconds)`` is the
    pause between ticks (a drain's wakes early on a second signal).
    """
    total = len(items)
    start = monotonic()
    while items:
        count = total if hurry() else due(total, window, monotonic() - start)
        while items and total - len(items) < count:
            if stop():
                return
            act(items.pop())
        if items:
            await wait(tick(window, rng()))
