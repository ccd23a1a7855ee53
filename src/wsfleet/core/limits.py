"""Rate limits with an injected clock: pure arithmetic, no timers, no I/O."""

from __future__ import annotations

from collections.abc import Callable


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, holding at most ``burst``.

    ``rate`` 0 disables the bucket: :meth:`take` always succeeds. ``clock``
    returns seconds (monotonic); it is injected so tests need no sleeping.
    """

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(self, *, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()

    def take(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if there are enough; return whether it did."""
        if self.rate <= 0:
            return True
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def retry_after(self, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens will be available (0 when they are now)."""
        if self.rate <= 0 or self._tokens >= n:
            return 0.0
        return (n - self._tokens) / self.rate
