"""The pace of a drain: pure functions, no clock."""

from __future__ import annotations

import itertools

import pytest

from wsfleet.core.drain import MAX_TICK, MIN_TICK, due, tick


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
