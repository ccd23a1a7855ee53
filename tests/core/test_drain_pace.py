"""The pace of a drain: pure functions, no clock."""

from __future__ import annotations

import itertools

import pytest

from wsfleet.core.pacing import MAX_TICK, MIN_TICK, due, run_paced, tick


def test_closes_are_due_evenly_over_the_window() -> None:
    total, window = 100, 10.0
    assert due(total, window, 0.0) == 0
    assert due(total, window, 1.0) == 10
    assert due(total, window, 5.0) == 50
    assert due(total, window, 9.99) == 100
    assert due(total, window, 12.0) == 100
    # At no point is more than one second's share (plus one for rounding) due at once.
    steps = [due(total, window, t / 10) for t in range(101)]
    assert all(b - a <= total / window + 1 for a, b in itertools.pairwise(steps))


def test_a_window_of_zero_closes_everything_at_once() -> None:
    assert due(37, 0.0, 0.0) == 37


def test_ticks_stay_within_their_bounds_and_jitter() -> None:
    assert tick(0.0, 0.0) == pytest.approx(MIN_TICK * 0.5)
    assert tick(1000.0, 0.999) == pytest.approx(MAX_TICK * 1.499)
    assert tick(10.0, 0.5) == pytest.approx(0.1)


class FakeClock:
    """A clock that moves only when the paced loop waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


async def test_run_paced_acts_on_everything_at_the_pace_of_the_window() -> None:
    clock, done = FakeClock(), []
    acted_at: list[float] = []

    def act(item: int) -> None:
        done.append(item)
        acted_at.append(clock.now)

    await run_paced(
        list(range(100)), 10.0, act, monotonic=clock.monotonic, wait=clock.wait, rng=lambda: 0.5
    )
    assert sorted(done) == list(range(100))
    # Never ahead of the window: by time t, at most ceil(100 * t / 10) acts.
    assert all(i < due(100, 10.0, t) or t >= 10.0 for i, t in enumerate(acted_at))
    assert acted_at[-1] >= 9.9


async def test_run_paced_hurried_acts_at_once_and_stops_when_told() -> None:
    clock, done = FakeClock(), []
    await run_paced(
        list(range(50)), 60.0, done.append,
        monotonic=clock.monotonic, wait=clock.wait, hurry=lambda: True,
    )  # fmt: skip
    assert len(done) == 50 and clock.waits == []

    stopped: list[int] = []
    await run_paced(
        list(range(50)), 0.0, stopped.append,
        monotonic=clock.monotonic, wait=clock.wait, stop=lambda: len(stopped) >= 7,
    )  # fmt: skip
    assert len(stopped) == 7
