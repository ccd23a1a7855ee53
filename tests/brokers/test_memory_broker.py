"""What the memory broker does beyond the conformance suite.

Per-publication TTL, what close() means for an in-process broker, a failing
handler, and that its memory stays bounded. The shared rules are in
``test_conformance.py``.
"""

from __future__ import annotations

import itertools
import logging

import pytest

from wsfleet.brokers import memory
from wsfleet.brokers.base import (
    NO_HISTORY,
    HistoryOptions,
    HistoryPage,
    HistoryQuery,
    PublishOptions,
)
from wsfleet.brokers.memory import MemoryBroker
from wsfleet.protocol.messages import ClientInfo, Publication, StreamPosition, raw

ALL = HistoryQuery(limit=-1)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Handler:
    def __init__(self) -> None:
        self.pubs: list[tuple[str, Publication, Publication | None]] = []

    def on_publication(
        self, channel: str, pub: Publication, position: StreamPosition, prev: Publication | None
    ) -> None:
        self.pubs.append((channel, pub, prev))

    def on_join(self, channel: str, info: ClientInfo) -> None:
        pass

    def on_leave(self, channel: str, info: ClientInfo) -> None:
        pass


def pub(n: int) -> Publication:
    return Publication(data=raw(b"%d" % n))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def broker(clock: Clock) -> MemoryBroker:
    epochs = (f"e{n}" for n in itertools.count(1))
    return MemoryBroker(clock=clock, epoch_factory=lambda: next(epochs))


async def test_each_publication_expires_ttl_after_its_own_publish(
    broker: MemoryBroker, clock: Clock
) -> None:
    options = PublishOptions(history=HistoryOptions(size=10, ttl=10.0))
    await broker.publish("ch", pub(1), options)
    clock.now += 6
    await broker.publish("ch", pub(2), options)
    clock.now += 6  # 12 s after the first, 6 s after the second
    page = await broker.history("ch", ALL, options.history)
    assert [p.offset for p in page.publications] == [2]


async def test_epochs_come_from_the_factory(broker: MemoryBroker, clock: Clock) -> None:
    options = PublishOptions(history=HistoryOptions(size=10, ttl=1.0, meta_ttl=5.0))
    first = await broker.publish("ch", pub(1), options)
    clock.now += 5
    second = await broker.publish("ch", pub(2), options)
    assert (first.position, second.position) == (
        StreamPosition(offset=1, epoch="e1"),
        StreamPosition(offset=1, epoch="e2"),
    )


async def test_reads_keep_the_meta_alive(broker: MemoryBroker, clock: Clock) -> None:
    history = HistoryOptions(size=10, ttl=1.0, meta_ttl=5.0)
    await broker.publish("ch", pub(1), PublishOptions(history=history))
    for _ in range(3):
        clock.now += 4
        await broker.history("ch", HistoryQuery(), history)
    again = await broker.publish("ch", pub(2), PublishOptions(history=history))
    assert again.position == StreamPosition(offset=2, epoch="e1")


async def test_read_applies_the_size_it_is_given(broker: MemoryBroker) -> None:
    options = PublishOptions(history=HistoryOptions(size=10, ttl=60.0))
    for n in range(5):
        await broker.publish("ch", pub(n), options)
    page = await broker.history("ch", ALL, HistoryOptions(size=2, ttl=60.0))
    assert [p.offset for p in page.publications] == [4, 5]


async def test_reading_without_history_creates_nothing(broker: MemoryBroker) -> None:
    assert await broker.history("ch", ALL, NO_HISTORY) == HistoryPage()
    first = await broker.publish(
        "ch", pub(1), PublishOptions(history=HistoryOptions(size=1, ttl=1))
    )
    # The first stream is made by the publish, so it gets the first epoch.
    assert first.position.epoch == "e1"


async def test_delta_prev_is_the_newest_kept(broker: MemoryBroker) -> None:
    handler = Handler()
    await broker.start(handler)
    await broker.subscribe("ch")
    history = HistoryOptions(size=1, ttl=60.0)
    await broker.publish("ch", pub(1), PublishOptions(history=history))
    await broker.publish("ch", pub(2), PublishOptions(history=history, delta=True))
    await broker.publish("ch", pub(3), PublishOptions(history=NO_HISTORY, delta=True))
    prevs = [prev for _, _, prev in handler.pubs]
    assert prevs[0] is None
    assert prevs[1] is not None
    assert prevs[1].offset == 1
    assert prevs[2] is None  # nothing kept, nothing to diff against


async def test_idempotent_repeat_without_history(broker: MemoryBroker) -> None:
    handler = Handler()
    await broker.start(handler)
    await broker.subscribe("ch")
    options = PublishOptions(idempotency_key="k")
    first = await broker.publish("ch", pub(1), options)
    repeat = await broker.publish("ch", pub(1), options)
    assert (first.suppressed, repeat.suppressed) == (False, True)
    assert repeat.position == first.position == StreamPosition()
    assert len(handler.pubs) == 1


async def test_close_stops_delivery_and_is_idempotent(broker: MemoryBroker) -> None:
    handler = Handler()
    await broker.start(handler)
    await broker.subscribe("ch")
    await broker.close()
    await broker.close()
    options = PublishOptions(history=HistoryOptions(size=10, ttl=60.0))
    result = await broker.publish("ch", pub(1), options)
    assert handler.pubs == []
    assert result.position.offset == 1
    assert broker.unavailable_reason() is None


async def test_a_failing_handler_does_not_fail_the_publish(
    broker: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing(Handler):
        def on_publication(self, *args: object) -> None:
            raise RuntimeError("boom")

    await broker.start(Failing())
    await broker.subscribe("ch")
    options = PublishOptions(history=HistoryOptions(size=10, ttl=60.0))
    with caplog.at_level(logging.ERROR, logger="wsfleet.brokers.memory"):
        result = await broker.publish("ch", pub(1), options)
    assert result.position.offset == 1
    assert "boom" in caplog.text
    page = await broker.history("ch", ALL, options.history)
    assert [p.offset for p in page.publications] == [1]


async def test_expired_state_is_swept(broker: MemoryBroker, clock: Clock) -> None:
    # Private state is inspected on purpose: bounded memory is the behaviour.
    short = HistoryOptions(size=10, ttl=1.0, meta_ttl=2.0)
    forever = HistoryOptions(size=10, ttl=1.0)
    for n in range(100):
        await broker.publish(
            f"idle-{n}",
            pub(n),
            PublishOptions(history=short, idempotency_key="k", idempotent_ttl=1.0),
        )
        await broker.add_presence(f"idle-{n}", "c1", ClientInfo(user="u"), ttl=1.0)
    await broker.publish("kept", pub(1), PublishOptions(history=forever))
    clock.now += memory.SWEEP_INTERVAL + 3
    await broker.publish("other", pub(1), PublishOptions(history=NO_HISTORY))
    assert set(broker._streams) == {"kept"}
    assert len(broker._streams["kept"].pubs) == 0  # aged out, though nobody read it
    assert broker._idempotent == {}
    assert broker._presence == {}


async def test_presence_read_prunes_expired_entries(broker: MemoryBroker, clock: Clock) -> None:
    await broker.add_presence("ch", "c1", ClientInfo(user="u", client="c1"), ttl=1.0)
    clock.now += 2
    assert await broker.presence("ch") == {}
    assert broker._presence == {}
