"""Redis dies and comes back empty under a running fleet: nobody silently loses a message.

What this proves, with three node processes, six SDK subscribers (JSON and
Protobuf on every node, all ``recoverable``) and a publisher that keeps
publishing through the three nodes' APIs while Redis is SIGKILLed and then
restarted on the same port without its data:

* during the outage every node says it is not ready (``/readyz`` 503, naming
  Redis) but alive (``/livez`` 200); a publish is answered with error 100
  (internal) instead of hanging; the SDK clients stay connected;
* once Redis is back, ``/readyz`` is 200 again without restarting a node, and
  publishing works and reaches every subscriber on every node; from the
  moment a node says it is ready, every command succeeds, even a burst that
  needs many Redis connections at once (none left over from before the
  outage is used);
* every subscriber either received every successful publication, in order,
  or was told it must resync (an unsubscribe push 2500, then a subscribe that
  says ``recovered: false`` and gives the new position) before anything past
  the hole: within one subscribed stretch offsets go up by exactly one and
  each publication is the one the API reported at that offset and epoch;
* Redis lost the stream, so the stream has a new epoch afterwards, and every
  subscriber ends in it, holding everything published in it since it rejoined.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cent
import pytest
from centrifuge import (
    Client,
    PublicationContext,
    SubscribedContext,
    SubscribingContext,
    SubscriptionErrorContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)

from tests.fleet.conftest import API_KEY, CONFIG, sdk
from tests.fleet.processes import Fleet, running_fleet
from tests.integration.clients import WAIT, ClientEvents, value
from tests.redis_servers import RedisServer, redis_server

CHANNEL = "feed:outage"
INSUFFICIENT_STATE = 2500


@pytest.fixture
def outage_redis() -> Iterator[RedisServer]:
    """This test's own Redis: it is killed and restarted."""
    with redis_server() as server:
        yield server


@pytest.fixture
def outage_fleet(outage_redis: RedisServer) -> Iterator[Fleet]:
    with running_fleet(3, outage_redis.url, config=CONFIG) as group:
        yield group


# -- what a subscriber saw, in order --------------------------------------------------


@dataclass
class Seen:
    kind: str  # subscribing, subscribed, unsubscribed, pub, error
    n: int | None = None
    offset: int = 0
    epoch: str = ""
    recovered: bool = False
    was_recovering: bool = False
    code: int = 0


@dataclass
class StreamLog(SubscriptionEventHandler):
    """Every event of one subscription, in the order the SDK reported them."""

    label: str
    seen: list[Seen] = field(default_factory=list)

    async def on_subscribing(self, ctx: SubscribingContext) -> None:
        self.seen.append(Seen("subscribing", code=ctx.code))

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        position = ctx.stream_position
        assert position is not None, f"{self.label}: a recoverable subscription has a position"
        self.seen.append(
            Seen(
                "subscribed",
                offset=position.offset,
                epoch=position.epoch,
                recovered=ctx.recovered,
                was_recovering=ctx.was_recovering,
            )
        )

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.seen.append(Seen("unsubscribed", code=ctx.code))

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.seen.append(Seen("pub", n=value(ctx.pub.data)["n"], offset=ctx.pub.offset))

    async def on_error(self, ctx: SubscriptionErrorContext) -> None:
        self.seen.append(Seen("error", code=ctx.code))

    def has(self, n: int) -> bool:
        return any(s.kind == "pub" and s.n == n for s in self.seen)

    def summary(self) -> str:
        out = []
        for s in self.seen:
            if s.kind == "pub":
                out.append(f"{s.n}@{s.offset}")
            elif s.kind == "subscribed":
                flags = "recovered" if s.recovered else "NOT recovered"
                out.append(f"[subscribed {s.epoch}:{s.offset} {flags}]")
            else:
                out.append(f"[{s.kind} {s.code}]")
        return f"{self.label}: " + " ".join(out)


@dataclass
class Verdict:
    resyncs: int
    epoch: str
    next_offset: int


def check_stream(log: StreamLog, published: dict[int, tuple[int, str]]) -> Verdict:
    """Fail unless the subscriber got everything, or was told to resync across each hole.

    ``published`` maps each successful publication's number to the (offset,
    epoch) the API answered. A publish that failed may still have reached
    Redis (the reply was lost), so an unknown number is accepted if its
    offset is the next one.
    """
    problems = []
    epoch, next_offset, resyncs, started = "", 0, 0, False
    for i, s in enumerate(log.seen):
        if s.kind == "subscribed":
            if not started:  # the first subscribe: where this subscriber's stream begins
                started = True
                epoch, next_offset = s.epoch, s.offset + 1
            elif not s.was_recovering:
                problems.append(f"#{i}: resubscribed without asking to recover")
            elif s.recovered:
                if s.epoch != epoch:
                    problems.append(f"#{i}: 'recovered' into another epoch {s.epoch}")
            else:
                resyncs += 1  # told plainly: state lost, start again from here
                epoch, next_offset = s.epoch, s.offset + 1
        elif s.kind == "subscribing":
            if started and s.code != INSUFFICIENT_STATE:  # code 0: subscribe() itself
                problems.append(f"#{i}: resubscribing for code {s.code}, not {INSUFFICIENT_STATE}")
        elif s.kind == "pub":
            assert s.n is not None
            if s.offset != next_offset:
                problems.append(f"#{i}: publication {s.n} at offset {s.offset}, not {next_offset}")
            known = published.get(s.n)
            if known is not None and known != (s.offset, epoch):
                problems.append(
                    f"#{i}: publication {s.n} is {known}, seen as ({s.offset}, {epoch})"
                )
            next_offset = s.offset + 1
        else:
            problems.append(f"#{i}: unexpected {s.kind} {s.code}")
    assert not problems, "\n".join([log.summary(), *problems])
    return Verdict(resyncs, epoch, next_offset)


# -- the publisher ----------------------------------------------------------------------


@dataclass
class Publisher:
    """Publishes ``{"n": 0}``, ``{"n": 1}`` ... round-robin over the nodes' APIs."""

    apis: list[cent.AsyncClient]
    ok: dict[int, tuple[int, str]] = field(default_factory=dict)
    failed: dict[int, tuple[int, str]] = field(default_factory=dict)
    sent: int = 0

    async def publish(self) -> bool:
        n = self.sent
        self.sent += 1
        api = self.apis[n % len(self.apis)]
        try:
            result = await api.publish(cent.PublishRequest(channel=CHANNEL, data={"n": n}))
        except cent.CentApiResponseError as exc:  # any other failure fails the test
            self.failed[n] = (exc.code, exc.message)
            return False
        self.ok[n] = (result.offset, result.epoch)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.publish()
            await asyncio.sleep(0.01)

    def successes_after(self, n: int) -> int:
        return sum(1 for k in self.ok if k > n)


async def until(what: str, condition: Callable[[], Any], timeout: float = 15.0) -> None:
    """Wait for a condition (sync or async); fail naming it after ``timeout`` seconds."""

    async def loop() -> None:
        while True:
            result = condition()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(loop(), timeout)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


@contextlib.asynccontextmanager
async def subscribers(
    group: Fleet,
) -> AsyncIterator[list[tuple[Client, ClientEvents, StreamLog]]]:
    out: list[tuple[Client, ClientEvents, StreamLog]] = []
    try:
        for node in group:
            for protobuf in (False, True):
                label = f"{node.name}/{'protobuf' if protobuf else 'json'}"
                events = ClientEvents()
                client = sdk(node, label, protobuf=protobuf, events=events)
                log = StreamLog(label)
                out.append((client, events, log))
                sub = client.new_subscription(CHANNEL, log, recoverable=True)
                await client.connect()
                await sub.subscribe()
                await sub.ready(timeout=WAIT)
        yield out
    finally:
        for client, _, _ in out:
            await client.disconnect()


async def test_redis_killed_and_restarted_under_a_publishing_fleet(
    outage_redis: RedisServer, outage_fleet: Fleet
) -> None:
    apis = [cent.AsyncClient(node.api_url, API_KEY) for node in outage_fleet]
    stop = asyncio.Event()
    publisher = Publisher(apis)
    try:
        async with subscribers(outage_fleet) as subs:
            task = asyncio.create_task(publisher.run(stop))
            try:
                await until("10 publications before the outage", lambda: len(publisher.ok) >= 10)

                # -- Redis dies, with everything it held ---------------------------------
                await asyncio.to_thread(outage_redis.kill)
                killed_at = publisher.sent

                async def all_unready() -> bool:
                    answers = [await node.probe("/readyz") for node in outage_fleet]
                    return all(code == 503 and "redis" in body for code, body in answers)

                await until("every node's /readyz says 503 naming redis", all_unready)
                for node in outage_fleet:
                    assert (await node.probe("/livez"))[0] == 200, f"{node.name} /livez"
                await until(
                    "publications failing during the outage",
                    lambda: sum(1 for n in publisher.failed if n >= killed_at) >= 3,
                )
                for api in apis:  # an error reply, not a hang (the pytest timeout bounds it)
                    with pytest.raises(cent.CentApiResponseError) as err:
                        await api.publish(cent.PublishRequest(channel=CHANNEL, data={"n": -1}))
                    assert err.value.code == 100
                for client, _, log in subs:
                    assert client.state.value == "connected", f"{log.label} lost its connection"

                # -- Redis is back, empty ------------------------------------------------
                await asyncio.to_thread(outage_redis.start)
                restarted_at = publisher.sent

                async def all_ready() -> bool:
                    answers = [await node.probe("/readyz") for node in outage_fleet]
                    return all(code == 200 for code, _ in answers)

                await until("every node's /readyz is 200 again", all_ready)
                await until(
                    "10 publications after the outage",
                    lambda: publisher.successes_after(restarted_at) >= 10,
                )
            finally:
                stop.set()
                await task

            # One more round through every node: it must reach everyone.
            for _ in outage_fleet:
                assert await publisher.publish(), f"publish failed: {publisher.failed}"
            last = publisher.sent - 1
            for _, _, log in subs:
                await until(
                    f"{log.label} receives publication {last}", functools.partial(log.has, last)
                )

            before = {epoch for n, (_, epoch) in publisher.ok.items() if n < killed_at}
            after = {epoch for n, (_, epoch) in publisher.ok.items() if n >= restarted_at}
            assert len(before) == len(after) == 1 and before != after, (
                f"a Redis that lost its data must give the stream a new epoch: {before} {after}"
            )
            (final_epoch,) = after
            top = max(offset for offset, epoch in publisher.ok.values() if epoch == final_epoch)
            for client, events, log in subs:
                verdict = check_stream(log, publisher.ok)
                assert (verdict.epoch, verdict.next_offset) == (final_epoch, top + 1), log.summary()
                assert events.events.pending("connecting") == [], f"{log.label} reconnected"
                assert events.events.pending("disconnected") == [], f"{log.label} disconnected"
                assert client.state.value == "connected"
            assert all(code == 100 for code, _ in publisher.failed.values()), publisher.failed
    finally:
        for api in apis:
            await api.close()


async def test_every_publish_succeeds_once_the_nodes_say_they_are_ready(
    outage_redis: RedisServer, outage_fleet: Fleet
) -> None:
    channel = "feed:after-restart"
    apis = [cent.AsyncClient(node.api_url, API_KEY) for node in outage_fleet]

    async def burst(api: cent.AsyncClient) -> list[str]:
        # Concurrent publishes: the node needs several Redis connections at once.
        async def one(n: int) -> str:
            try:
                await api.publish(cent.PublishRequest(channel=channel, data={"n": n}))
            except cent.CentApiResponseError as exc:
                return f"{exc.code} {exc.message}"
            return "ok"

        return list(await asyncio.gather(*(one(n) for n in range(20))))

    try:
        for api in apis:
            assert set(await burst(api)) == {"ok"}
        await asyncio.to_thread(outage_redis.kill)

        async def all_ready() -> bool:
            answers = [await node.probe("/readyz") for node in outage_fleet]
            return all(code == 200 for code, _ in answers)

        async def none_ready() -> bool:
            answers = [await node.probe("/readyz") for node in outage_fleet]
            return all(code == 503 for code, _ in answers)

        # Readiness must go and come back: otherwise "ready" below could be the
        # state from before the outage.
        await until("every node's /readyz is 503 during the outage", none_ready)
        await asyncio.to_thread(outage_redis.start)

        await until("every node's /readyz is 200 again", all_ready)
        for node, api in zip(outage_fleet, apis, strict=True):
            outcomes = await burst(api)
            failed = [o for o in outcomes if o != "ok"]
            assert not failed, (
                f"{node.name} said ready, yet {len(failed)} of 20 failed: {failed[0]}"
            )
    finally:
        for api in apis:
            await api.close()
