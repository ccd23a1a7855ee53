from __future__ import annotations

from wsfleet.core.lifecycle import Lifecycle, Phase
from wsfleet.core.limits import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == 0.5
    clock.now += 0.5
    assert bucket.take() and not bucket.take()


def test_rate_zero_disables_the_bucket() -> None:
    bucket = TokenBucket(rate=0, burst=1, clock=Clock())
    assert all(bucket.take() for _ in range(1000))


def test_lifecycle_only_moves_forward() -> None:
    life = Lifecycle()
    assert not life.accepting
    assert life.advance(Phase.READY) and life.accepting
    assert life.advance(Phase.DRAINING)
    assert not life.advance(Phase.READY)  # a late READY cannot undo a drain
    assert life.phase is Phase.DRAINING and not life.accepting
