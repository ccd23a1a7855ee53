from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from wsfleet.core.timers import TimerQueue


class Handle:
    def __init__(self, when: float, cb: Callable[[], None]) -> None:
        self.when = when
        self.cb = cb
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    """A clock the test moves; runs the loop timers that come due."""

    def __init__(self) -> None:
        self.now = 100.0
        self.handles: list[Handle] = []
        self.errors: list[dict[str, Any]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, cb: Callable[[], None]) -> Handle:
        handle = Handle(when, cb)
        self.handles.append(handle)
        return handle

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        self.errors.append(context)

    @property
    def armed(self) -> list[float]:
        return [h.when for h in self.handles if not h.cancelled]

    def advance(self, to: float) -> None:
        """Move the clock to ``to``, running due loop timers in order, as a loop would."""
        while True:
            due = sorted((h for h in self.handles if not h.cancelled), key=lambda h: h.when)
            if not due or due[0].when > to:
                break
            handle = due[0]
            self.handles.remove(handle)
            self.now = max(self.now, handle.when)
            handle.cb()
        self.now = to


def make(delay: float = 10.0) -> tuple[Loop, TimerQueue[str], list[tuple[float, str]]]:
    loop = Loop()
    fired: list[tuple[float, str]] = []
    queue: TimerQueue[str] = TimerQueue(
        loop,  # type: ignore[arg-type]
        delay,
        lambda target: fired.append((loop.now, target)),
    )
    return loop, queue, fired


def test_each_timer_fires_its_delay_after_it_started_in_order() -> None:
    loop, queue, fired = make()
    queue.start("a")
    loop.now = 103.0
    queue.start("b")
    loop.advance(109.0)
    assert fired == []
    loop.advance(120.0)
    assert fired == [(110.0, "a"), (113.0, "b")]
    assert len(queue) == 0
    assert loop.armed == []


def test_one_loop_timer_for_many_entries() -> None:
    loop, queue, fired = make()
    for i in range(100):
        loop.now = 100.0 + i * 0.01
        queue.start(str(i))
    assert len(loop.armed) == 1
    loop.advance(200.0)
    assert [t for _, t in fired] == [str(i) for i in range(100)]


def test_a_cancelled_timer_does_not_fire_and_is_not_waited_for() -> None:
    loop, queue, fired = make()
    a = queue.start("a")
    loop.now = 105.0
    queue.start("b")
    a.cancel()
    loop.advance(110.0)  # the loop timer armed for "a" finds nothing due
    assert fired == []
    assert loop.armed == [115.0]
    loop.advance(120.0)
    assert fired == [(115.0, "b")]


def test_starting_after_only_cancelled_entries_arms_for_the_new_one() -> None:
    loop, queue, fired = make()
    queue.start("a").cancel()
    loop.advance(111.0)
    queue.start("b")
    assert loop.armed == [121.0]
    loop.advance(130.0)
    assert fired == [(121.0, "b")]


def test_a_callback_may_restart_its_timer() -> None:
    loop = Loop()
    fired: list[float] = []

    def ping(target: str) -> None:
        fired.append(loop.now)
        queue.start(target)

    queue: TimerQueue[str] = TimerQueue(loop, 10.0, ping)  # type: ignore[arg-type]
    queue.start("ping")
    loop.advance(135.0)
    assert fired == [110.0, 120.0, 130.0]
    assert loop.armed == [140.0]


def test_entries_due_within_the_loop_resolution_fire_in_one_pass() -> None:
    loop, queue, fired = make()
    queue.start("a")
    loop.now = 100.0005
    queue.start("b")
    loop.advance(110.0)
    assert [t for _, t in fired] == ["a", "b"]


def test_a_failing_callback_is_reported_and_the_others_still_fire() -> None:
    loop = Loop()
    fired: list[str] = []

    def callback(target: str) -> None:
        if target == "bad":
            raise RuntimeError("boom")
        fired.append(target)

    queue: TimerQueue[str] = TimerQueue(loop, 1.0, callback)  # type: ignore[arg-type]
    queue.start("bad")
    queue.start("good")
    loop.advance(102.0)
    assert fired == ["good"]
    assert [type(e["exception"]) for e in loop.errors] == [RuntimeError]


def test_close_drops_every_entry_and_the_loop_timer() -> None:
    loop, queue, fired = make()
    queue.start("a")
    queue.close()
    assert loop.armed == []
    assert len(queue) == 0
    loop.advance(200.0)
    assert fired == []


async def test_on_a_real_loop() -> None:
    loop = asyncio.get_running_loop()
    fired: list[str] = []
    queue: TimerQueue[str] = TimerQueue(loop, 0.05, fired.append)
    started = loop.time()
    queue.start("a")
    queue.start("b").cancel()
    queue.start("c")
    await asyncio.sleep(0.15)
    assert fired == ["a", "c"]
    assert loop.time() - started >= 0.05


@pytest.mark.parametrize("delay", [0.01, 1.0])
def test_delay_is_the_queues(delay: float) -> None:
    loop, queue, _ = make(delay)
    timer = queue.start("a")
    assert timer.when == pytest.approx(100.0 + delay)
