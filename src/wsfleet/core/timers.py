"""One-shot timers that all wait the same delay, kept in order on one loop timer.

Every connection restarts a few timers whose delay is the same for all of
them: the next server ping, the pong it waits for, the connect deadline, the
presence refresh. An event-loop timer per connection costs about 550 bytes
(uvloop's handle, its libuv timer, a context copy and a bound method); an
entry here costs about 70. With a single delay, timers come due in the order
they were started, so a FIFO is the whole schedule: one loop timer is armed
for the oldest live entry, and each entry fires at the time its own loop timer
would have.

Not for timers whose delays differ from one start to the next (token expiry,
a lifetime with jitter): those keep their own loop timer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

RESOLUTION = 0.001
"""Seconds early an entry may fire: the event loop's timers are only as
fine-grained as a millisecond, and one due that close is due now."""


class Timer(Generic[T]):
    """One started timer; :meth:`cancel` makes it a no-op."""

    __slots__ = ("target", "when")

    def __init__(self, when: float, target: T) -> None:
        self.when = when
        self.target: T | None = target

    def cancel(self) -> None:
        self.target = None


class TimerQueue(Generic[T]):
    """Timers of ``delay`` seconds; each calls ``callback(target)`` when due.

    A callback may start timers on the same queue (a ping schedules the next
    one); they are due ``delay`` later, so they never run in the same pass.
    An exception in one callback goes to the loop's exception handler and
    does not stop the others.
    """

    __slots__ = ("_armed", "_callback", "_entries", "_handle", "_loop", "delay")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, delay: float, callback: Callable[[T], None]
    ) -> None:
        self._loop = loop
        self.delay = delay
        self._callback = callback
        self._entries: deque[Timer[T]] = deque()
        self._handle: asyncio.TimerHandle | None = None
        self._armed = False

    def __len__(self) -> int:
        """Entries held, cancelled ones included until they come due."""
        return len(self._entries)

    def start(self, target: T) -> Timer[T]:
        """Call back for ``target`` ``delay`` seconds from now."""
        timer = Timer(self._loop.time() + self.delay, target)
        self._entries.append(timer)
        if not self._armed:
            self._arm()
        return timer

    def _arm(self) -> None:
        entries = self._entries
        while entries and entries[0].target is None:
            entries.popleft()  # cancelled: no need to wake up for it
        if entries:
            self._armed = True
            self._handle = self._loop.call_at(entries[0].when, self._fire)
        else:
            self._armed = False
            self._handle = None

    def _fire(self) -> None:
        entries = self._entries
        callback = self._callback
        due = self._loop.time() + RESOLUTION
        while entries and entries[0].when <= due:
            timer = entries.popleft()
            target = timer.target
            if target is None:
                continue
            timer.target = None
            try:
                callback(target)
            except Exception as exc:  # as the event loop does for its own callbacks
                self._loop.call_exception_handler(
                    {"message": "timer callback failed", "exception": exc, "target": target}
                )
        self._arm()

    def close(self) -> None:
        """Drop every entry and the loop timer (the node is stopping)."""
        self._entries.clear()
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._armed = False
