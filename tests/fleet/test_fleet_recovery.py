"""A client that leaves one node recovers exactly what it missed on another node.

What this proves: a stream position (offset, epoch) handed out by one node is
valid on every node of the fleet, because the stream lives in Redis; so a
client whose connection moves to another node (a reconnect through the load
balancer, the node it was on killed, or a new client given the position the
application saved) gets every publication it missed, with ``recovered`` true,
no gap, no duplicate, and then live publications on the new node. And the
converse: once Redis has lost the channel (its keys deleted, as a restart
without persistence does), no node, the old one or another, claims to recover
the old position: ``recovered`` is false and the position is the new epoch's.

How the client moves: the SDK's ``Client`` has one address, as in production
where it is the load balancer's. Here it is a :class:`Balancer` (a TCP
forwarder) whose route is switched from node-0 to node-1 while the client is
away; the SDK reconnects to the same address on its own terms and resubscribes
with the position it remembers (``recoverable=True``). The third way is the
SDK's ``get_state``: a new ``Client`` on node-1 whose subscription starts from
a position the application kept, which the SDK sends as a recovery.
"""

from __future__ import annotations

import uuid
from typing import Any

import cent
import pytest
from centrifuge import StreamPosition

from tests.fleet.balancer import balancer
from tests.fleet.conftest import API_KEY, sdk
from tests.fleet.processes import Fleet, NodeProcess
from tests.integration.clients import BOTH_PROTOCOLS, SubEvents, subscribed, value
from tests.redis_servers import RedisServer


async def publish(node: NodeProcess, channel: str, numbers: range) -> list[int]:
    """Publish ``{"n": n}`` for each n through ``node``'s API; the offsets given."""
    api = cent.AsyncClient(node.api_url, API_KEY)
    try:
        return [
            (await api.publish(cent.PublishRequest(channel=channel, data={"n": n}))).offset
            for n in numbers
        ]
    finally:
        await api.close()


async def assert_recovered_then_live(
    events: SubEvents, publisher: NodeProcess, channel: str, missed: list[int]
) -> None:
    """The next subscribe recovered exactly ``missed``; the one after arrives live."""
    again = await events.next("subscribed")
    assert again.was_recovering, "the SDK did not ask to recover"
    assert again.recovered, "the other node did not recover the position of the first"
    pubs = await events.take("pub", len(missed))
    assert [value(p.data)["n"] for p in pubs] == missed
    assert [p.offset for p in pubs] == missed  # n == offset on these fresh channels
    live = missed[-1] + 1
    await publish(publisher, channel, range(live, live + 1))
    pub = await events.next("pub")
    assert (value(pub.data)["n"], pub.offset) == (live, live)
    assert events.events.pending("pub") == [], "duplicates after recovery"


@BOTH_PROTOCOLS
async def test_reconnect_through_the_balancer_recovers_on_another_node(
    fleet3: Fleet, protobuf: bool
) -> None:
    first, second, publisher = fleet3
    channel = f"feed:move-{uuid.uuid4().hex[:8]}"
    async with balancer(first) as lb:
        client = sdk(lb, "mover", protobuf=protobuf)
        try:
            await client.connect()
            _, events = await subscribed(client, channel, recoverable=True)
            assert (await events.next("subscribed")).recoverable
            assert await publish(publisher, channel, range(1, 3)) == [1, 2]
            assert [p.offset for p in await events.take("pub", 2)] == [1, 2]

            await client.disconnect()
            await publish(publisher, channel, range(3, 9))  # missed while away
            lb.route_to(second)
            await client.connect()

            await assert_recovered_then_live(events, publisher, channel, list(range(3, 9)))
            # Two connections in all: the first to node-0, the one that recovered to node-1.
            assert lb.routed == [first.name, second.name]
        finally:
            await client.disconnect()


async def test_the_node_dies_and_the_sdk_recovers_on_another(fleet3: Fleet) -> None:
    first, second, publisher = fleet3
    channel = f"feed:dies-{uuid.uuid4().hex[:8]}"
    try:
        async with balancer(first) as lb:
            client = sdk(lb, "survivor")
            try:
                await client.connect()
                _, events = await subscribed(client, channel, recoverable=True)
                await events.next("subscribed")
                await publish(publisher, channel, range(1, 3))
                await events.take("pub", 2)

                first.kill()  # SIGKILL: no close frame, no goodbye
                lost = await events.next("subscribing")
                assert lost.code != 0, "the SDK should see its transport go"
                # The balancer still sends reconnections to the dead node, which
                # fail; meanwhile publications continue through another node.
                await publish(publisher, channel, range(3, 7))
                lb.route_to(second)

                await assert_recovered_then_live(events, publisher, channel, [3, 4, 5, 6])
                # Node-0 is dead: the recovering connection can only be node-1's.
                assert lb.routed[0] == first.name and lb.routed[-1] == second.name
            finally:
                await client.disconnect()
    finally:
        await first.restart()  # the module's fleet is whole again for the next tests
    assert (await first.probe("/readyz"))[0] == 200


async def test_a_new_client_recovers_on_another_node_from_a_saved_position(
    fleet3: Fleet,
) -> None:
    first, second, publisher = fleet3
    channel = f"feed:saved-{uuid.uuid4().hex[:8]}"
    old = sdk(first, "app")
    try:
        await old.connect()
        _, old_events = await subscribed(old, channel, recoverable=True)
        epoch = (await old_events.next("subscribed")).stream_position.epoch
        await publish(publisher, channel, range(1, 4))
        last = (await old_events.take("pub", 3))[-1]
        saved = StreamPosition(offset=last.offset, epoch=epoch)
    finally:
        await old.disconnect()
    await publish(publisher, channel, range(4, 9))

    # The application restores its state and gives the SDK the position it had
    # reached (get_state); the subscribe on node-1 recovers from there.
    asked: list[str] = []

    async def get_state(ch: str) -> StreamPosition:
        asked.append(ch)
        return saved

    fresh = sdk(second, "app")
    try:
        await fresh.connect()
        events = SubEvents()
        sub: Any = fresh.new_subscription(channel, events, recoverable=True, get_state=get_state)
        await sub.subscribe()
        await assert_recovered_then_live(events, publisher, channel, [4, 5, 6, 7, 8])
        assert asked == [channel], "get_state is called once, for the first subscribe"
    finally:
        await fresh.disconnect()


@pytest.mark.parametrize("where", ["same_node", "other_node"])
async def test_a_position_from_before_a_history_loss_is_not_recovered(
    fleet3: Fleet, fleet_redis: RedisServer, where: str
) -> None:
    # Deleting the channel's keys in Redis is what a Redis restart without
    # persistence does to it: every node must then refuse the old position.
    first, second, publisher = fleet3
    channel = f"feed:lost-{uuid.uuid4().hex[:8]}"
    async with balancer(first) as lb:
        client = sdk(lb, "forgotten")
        try:
            await client.connect()
            _, events = await subscribed(client, channel, recoverable=True)
            before = (await events.next("subscribed")).stream_position
            await publish(publisher, channel, range(1, 3))
            await events.take("pub", 2)
            await client.disconnect()

            keys = fleet_redis.cli("--scan", "--pattern", f"*{channel}*").split()
            assert keys, "the channel's keys should be in the fleet's Redis"
            fleet_redis.cli("del", *keys)
            await publish(publisher, channel, range(3, 4))  # a new life of the stream
            lb.route_to(first if where == "same_node" else second)
            await client.connect()

            again = await events.next("subscribed")
            assert again.was_recovering
            assert not again.recovered
            assert again.stream_position.epoch != before.epoch
            assert again.stream_position.offset == 1
            assert events.events.pending("pub") == []
        finally:
            await client.disconnect()
