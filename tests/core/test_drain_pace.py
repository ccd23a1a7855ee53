"""The pace of a drain and the rebalancing arithmetic: pure functions, no clock."""

from __future__ import annotations

import itertools

import pytest

from wsfleet.core.drain import MAX_TICK, MIN_TICK, due, tick
from wsfleet.core.rebalance import excess


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


def test_a_node_above_the_tolerance_sheds_down_to_the_mean() -> None:
    # Two old nodes with 300 each, two new ones empty: mean 150.
    assert excess(300, [300, 300, 0, 0], 0.1) == 150
    assert excess(0, [300, 300, 0, 0], 0.1) == 0


def test_within_the_tolerance_nothing_is_shed() -> None:
    assert excess(105, [105, 95, 100], 0.1) == 0
    assert excess(111, [111, 90, 99], 0.1) == 11


def test_alone_a_node_never_sheds() -> None:
    assert excess(500, [500], 0.0) == 0
    assert excess(500, [], 0.0) == 0


def test_the_mean_is_rounded_up_so_a_node_never_goes_below_it() -> None:
    # 7 connections over two nodes: the mean is 3.5; shedding stops at 4.
    assert excess(7, [7, 0], 0.0) == 3
