"""Fixtures of the broker conformance suite: one suite, every broker.

``test_conformance.py`` is written against the :class:`BrokerFactory` below,
never against one broker. Every backend in :data:`BACKENDS` runs the whole
suite. To add a broker, write an async context manager that yields a
:class:`BrokerFactory` for it and add ONE entry, for example::

    BACKENDS["redis"] = BackendSpec(
        open=redis_backend,            # (request) -> AsyncContextManager[BrokerFactory]
        supports_multiple_nodes=True,  # nodes share the Redis server: peer tests run
        fake_clock=False,              # time-based tests sleep for real (marked slow)
        marks=(pytest.mark.redis,),
    )

``open`` gets the pytest request, so a backend can use other fixtures (a
private ``redis-server`` on a free port, say) with ``request.getfixturevalue``.

Delivery may be asynchronous (Redis pub/sub delivers on a reader task), so
tests never look at the recorder right after a call: they await events with
:meth:`Recorder.next` / :meth:`Recorder.take`, which fail after ``within``
seconds instead of hanging, and they prove that something was NOT delivered with
:meth:`Recorder.barrier`.

Time: tests move it with ``await broker_factory.advance(seconds)``. A backend
with a fake clock moves the clock; one without sleeps for real. Tests that
advance time carry the ``advances_time`` mark, and on a backend without a fake
clock they are marked ``slow`` too, so ``-m "not slow"`` skips them there.
"""

from __future__ import annotations

import abc
import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Literal, NamedTuple

import pytest

# Private redis-server fixtures for the "redis" backends below (session-scoped).
from tests.redis_servers import session_redis, session_redis_cluster  # noqa: F401
from wsfleet.brokers.base import Broker, FleetState, NodeInfo, PresenceManager, PublishOptions
from wsfleet.brokers.memory import MemoryBroker
from wsfleet.protocol.messages import ClientInfo, Publication, StreamPosition, raw

DEFAULT_TIMEOUT = 5.0
"""Seconds to wait for an expected event before failing (not a performance bound)."""


# -- recording what a node hears ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One callback the broker made on a node's handler."""

    kind: Literal["publication", "join", "leave"]
    channel: str
    pub: Publication | None = None
    position: StreamPosition | None = None
    prev: Publication | None = None
    info: ClientInfo | None = None


class Recorder:
    """A :class:`~wsfleet.brokers.base.BrokerEventHandler` that records events.

    Events are consumed in arrival order by :meth:`next`, :meth:`take` and
    :meth:`barrier`; ``events`` keeps all of them.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._cursor = 0
        self._arrived = asyncio.Event()

    # BrokerEventHandler

    def on_publication(
        self,
        channel: str,
        pub: Publication,
        position: StreamPosition,
        prev: Publication | None,
    ) -> None:
        self._record(Event("publication", channel, pub=pub, position=position, prev=prev))

    def on_join(self, channel: str, info: ClientInfo) -> None:
        self._record(Event("join", channel, info=info))

    def on_leave(self, channel: str, info: ClientInfo) -> None:
        self._record(Event("leave", channel, info=info))

    def _record(self, event: Event) -> None:
        self.events.append(event)
        self._arrived.set()

    # awaiting events

    @property
    def pending(self) -> list[Event]:
        """Events received and not consumed yet."""
        return self.events[self._cursor :]

    async def _wait_for_count(self, count: int, within: float) -> None:
        try:
            async with asyncio.timeout(within):
                while len(self.events) < count:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(
                f"expected {count - self._cursor} event(s) within {within} s, "
                f"got {len(self.events) - self._cursor}: {self.pending!r}"
            ) from None

    async def next(self, *, within: float = DEFAULT_TIMEOUT) -> Event:
        """The next event, waiting for it to arrive."""
        return (await self.take(1, within=within))[0]

    async def take(self, count: int, *, within: float = DEFAULT_TIMEOUT) -> list[Event]:
        """The next ``count`` events, waiting for all of them to arrive."""
        await self._wait_for_count(self._cursor + count, within)
        taken = self.events[self._cursor : self._cursor + count]
        self._cursor += count
        return taken

    async def barrier(
        self, broker: Broker, channel: str, *, within: float = DEFAULT_TIMEOUT
    ) -> list[Event]:
        """Everything delivered before a marker published now, consumed.

        Publishes a marker (no history) on ``channel``, which this node must be
        subscribed to, and waits for it. Publications on one channel arrive in
        order, so anything published on ``channel`` before the barrier that
        was going to arrive has arrived. Used across channels, it relies on
        the backend delivering one node's publications in publish order, which
        holds for a single pub/sub connection.
        """
        marker = raw(b'{"barrier":"%s"}' % uuid.uuid4().hex.encode())
        await broker.publish(channel, Publication(data=marker), PublishOptions())
        before: list[Event] = []
        while True:
            event = await self.next(within=within)
            if event.kind == "publication" and event.pub is not None and event.pub.data == marker:
                return before
            before.append(event)


# -- nodes and backends ------------------------------------------------------------


class BrokerNode(NamedTuple):
    """One started node: its broker, presence manager, fleet state and event recorder.

    The node is registered in the fleet (presence only counts entries of live
    nodes) for :data:`REGISTERED_TTL` seconds; ``uid`` is its registry id.
    """

    broker: Broker
    presence: PresenceManager
    events: Recorder
    fleet: FleetState
    uid: str


REGISTERED_TTL = 3600.0


@asynccontextmanager
async def registered(
    broker: Broker, presence: PresenceManager, fleet: FleetState, uid: str
) -> AsyncIterator[BrokerNode]:
    """Start ``broker`` with a recorder and a registry entry; close both on exit."""
    recorder = Recorder()
    await broker.start(recorder)
    try:
        await fleet.heartbeat(NodeInfo(uid=uid, name=uid), ttl=REGISTERED_TTL)
        yield BrokerNode(broker, presence, recorder, fleet, uid)
    finally:
        await broker.close()


class BrokerFactory(abc.ABC):
    """Makes started nodes of one backend, and moves that backend's time.

    Calling it gives an async context manager for a started node; on exit the
    node's broker is closed. Nodes from one factory share the backend (they
    are nodes of one fleet) when ``supports_multiple_nodes`` is true.
    """

    supports_multiple_nodes: bool = False
    fake_clock: bool = False

    @abc.abstractmethod
    def __call__(self) -> AbstractAsyncContextManager[BrokerNode]:
        """A started node of this backend."""

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for the backend; real time unless overridden."""
        await asyncio.sleep(seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendSpec:
    """How the suite gets a backend, and what it can do (known at collection)."""

    open: Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[BrokerFactory]]
    supports_multiple_nodes: bool
    fake_clock: bool
    marks: tuple[pytest.MarkDecorator, ...] = ()


class FakeClock:
    """A settable time source; starts at an arbitrary wall-clock-like value."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryFactory(BrokerFactory):
    """The memory broker on a fake clock. One broker is one node: no peers."""

    supports_multiple_nodes = False
    fake_clock = True

    def __init__(self) -> None:
        self.clock = FakeClock()
        self._made = False

    @asynccontextmanager
    async def _node(self) -> AsyncIterator[BrokerNode]:
        if self._made:
            # A second MemoryBroker would share nothing with the first, so a
            # test using it as a peer would test nothing.
            raise RuntimeError("the memory backend has a single node")
        self._made = True
        broker = MemoryBroker(clock=self.clock)
        async with registered(broker, broker, broker.fleet, "memory-node") as node:
            yield node

    def __call__(self) -> AbstractAsyncContextManager[BrokerNode]:
        return self._node()

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


@asynccontextmanager
async def memory_backend(request: pytest.FixtureRequest) -> AsyncIterator[BrokerFactory]:
    yield MemoryFactory()


class RedisFactory(BrokerFactory):
    """Nodes on one private Redis (server or Cluster); real time, real peers."""

    supports_multiple_nodes = True
    fake_clock = False

    def __init__(self, url: str) -> None:
        self.url = url
        # A prefix per test: tests sharing the session's server see nothing of
        # each other, whatever channel names they use.
        self.prefix = f"conformance-{uuid.uuid4().hex[:8]}"
        self._nodes = itertools.count(1)

    @asynccontextmanager
    async def _node(self) -> AsyncIterator[BrokerNode]:
        from wsfleet.brokers.redis import create_redis_broker

        uid = f"node{next(self._nodes)}"
        broker, presence = create_redis_broker(self.url, key_prefix=self.prefix, node_id=uid)
        async with registered(broker, presence, broker.fleet, uid) as node:
            yield node

    def __call__(self) -> AbstractAsyncContextManager[BrokerNode]:
        return self._node()


@asynccontextmanager
async def redis_backend(request: pytest.FixtureRequest) -> AsyncIterator[BrokerFactory]:
    yield RedisFactory(request.getfixturevalue("session_redis").url)


@asynccontextmanager
async def redis_cluster_backend(request: pytest.FixtureRequest) -> AsyncIterator[BrokerFactory]:
    yield RedisFactory(request.getfixturevalue("session_redis_cluster").url)


BACKENDS: dict[str, BackendSpec] = {
    "memory": BackendSpec(open=memory_backend, supports_multiple_nodes=False, fake_clock=True),
    "redis": BackendSpec(
        open=redis_backend,
        supports_multiple_nodes=True,
        fake_clock=False,
        marks=(pytest.mark.redis,),
    ),
    "redis-cluster": BackendSpec(
        open=redis_cluster_backend,
        supports_multiple_nodes=True,
        fake_clock=False,
        marks=(pytest.mark.redis, pytest.mark.slow),
    ),
}
"""Every backend the conformance suite runs against, by test id."""


# -- pytest wiring -----------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "advances_time: the test lets broker time pass (slow on backends without a fake clock)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Parametrized here, at collection, rather than in the fixture decorator,
    # so an entry added to BACKENDS anywhere before collection is picked up.
    if "broker_factory" not in metafunc.fixturenames:
        return
    advances_time = metafunc.definition.get_closest_marker("advances_time") is not None
    params = []
    for name, spec in BACKENDS.items():
        marks = list(spec.marks)
        if advances_time and not spec.fake_clock:
            marks.append(pytest.mark.slow)
        params.append(pytest.param(name, id=name, marks=marks))
    metafunc.parametrize("broker_factory", params, indirect=True)


@pytest.fixture
async def broker_factory(request: pytest.FixtureRequest) -> AsyncIterator[BrokerFactory]:
    """The backend under test (one parameter per entry of :data:`BACKENDS`)."""
    spec = BACKENDS[request.param]
    async with spec.open(request) as factory:
        assert factory.supports_multiple_nodes == spec.supports_multiple_nodes
        assert factory.fake_clock == spec.fake_clock
        yield factory


@pytest.fixture
async def node(broker_factory: BrokerFactory) -> AsyncIterator[BrokerNode]:
    """A started node."""
    async with broker_factory() as started:
        yield started


@pytest.fixture
async def peer(
    request: pytest.FixtureRequest, broker_factory: BrokerFactory, node: BrokerNode
) -> AsyncIterator[BrokerNode]:
    """A second node of the same fleet as ``node``; skips where there is none."""
    if not broker_factory.supports_multiple_nodes:
        pytest.skip(
            f"{request.node.callspec.params['broker_factory']}: one broker instance is one "
            "node, so there is no second node to fan out to"
        )
    async with broker_factory() as started:
        yield started


_channel_numbers: Iterator[int] = itertools.count(1)


@pytest.fixture
def channel() -> str:
    """A channel name no other test uses, even on a shared backend."""
    return f"conformance:{uuid.uuid4().hex[:12]}:{next(_channel_numbers)}"


@pytest.fixture
def make_channel() -> Callable[[], str]:
    """Makes more channel names no other test uses."""
    return lambda: f"conformance:{uuid.uuid4().hex[:12]}:{next(_channel_numbers)}"
