"""Presence and join/leave are fleet-wide: what one node's clients do, every node knows.

What this proves: a subscriber on node-0 that asked for join/leave events is
told when a client of node-1 joins the channel, leaves it (unsubscribe) and
goes away (disconnect); presence and presence stats asked on node-2, which
has no subscriber of the channel at all, list the clients of both other
nodes; and a client's presence entry is removed fleet-wide when it leaves.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import cent

from tests.fleet.conftest import API_KEY, sdk
from tests.fleet.processes import Fleet
from tests.integration.clients import WAIT, SubEvents, subscribed


async def until(what: str, condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll a condition that becomes true asynchronously; fail naming it after WAIT s."""
    try:
        async with asyncio.timeout(WAIT):
            while not await condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {WAIT} s: {what}") from None


async def next_about_others(watch: SubEvents, kind: str, me: str) -> Any:
    """The next join or leave about another client than ``me``.

    Whether a subscriber also gets its own join depends on whether the join
    comes back from Redis before or after its subscribe completes: not what
    these tests are about, so it is skipped.
    """
    while True:
        info = await watch.next(kind)
        if info.client != me:
            return info


async def test_join_leave_and_presence_across_three_nodes(fleet3: Fleet) -> None:
    node_a, node_b, node_c = fleet3
    channel = f"room:{uuid.uuid4().hex[:8]}"
    alice = sdk(node_a, "alice")
    bob = sdk(node_b, "bob", protobuf=True)
    api_c = cent.AsyncClient(node_c.api_url, API_KEY)
    try:
        await alice.connect()
        alice_sub, watch = await subscribed(alice, channel, join_leave=True)
        await bob.connect()
        bob_sub, _ = await subscribed(bob, channel, join_leave=True)

        joined = await next_about_others(watch, "join", alice.client_id)
        assert (joined.client, joined.user) == (bob.client_id, "bob")

        # Node-2 has no client in this channel: it answers from Redis alone.
        presence = await api_c.presence(cent.PresenceRequest(channel=channel))
        assert {cid: info.user for cid, info in presence.presence.items()} == {
            alice.client_id: "alice",
            bob.client_id: "bob",
        }
        stats = await api_c.presence_stats(cent.PresenceStatsRequest(channel=channel))
        assert (stats.num_clients, stats.num_users) == (2, 2)
        # The SDK's own presence call, answered by node-0, sees node-1's client too.
        assert set((await alice_sub.presence()).clients) == {alice.client_id, bob.client_id}

        await bob_sub.unsubscribe()
        left = await next_about_others(watch, "leave", alice.client_id)
        assert (left.client, left.user) == (bob.client_id, "bob")

        async def only_alice() -> bool:
            now = await api_c.presence(cent.PresenceRequest(channel=channel))
            return set(now.presence) == {alice.client_id}

        await until("bob's presence removed after his unsubscribe", only_alice)

        await bob_sub.subscribe()
        rejoined = await next_about_others(watch, "join", alice.client_id)
        assert rejoined.client == bob.client_id
        bob_id = bob.client_id
        await bob.disconnect()  # the connection goes: the leave comes with it
        gone = await next_about_others(watch, "leave", alice.client_id)
        assert (gone.client, gone.user) == (bob_id, "bob")

        await until("bob's presence removed after his disconnect", only_alice)
        stats = await api_c.presence_stats(cent.PresenceStatsRequest(channel=channel))
        assert (stats.num_clients, stats.num_users) == (1, 1)
        others = [
            (kind, info.client)
            for kind in ("join", "leave")
            for info in watch.events.pending(kind)
            if info.client != alice.client_id
        ]
        assert others == [], "join/leave events that did not happen"
    finally:
        await bob.disconnect()
        await alice.disconnect()
        await api_c.close()


async def test_two_connections_of_one_user_on_two_nodes_count_once(fleet3: Fleet) -> None:
    node_a, node_b, node_c = fleet3
    channel = f"room:{uuid.uuid4().hex[:8]}"
    clients = [
        sdk(node_a, "carol"),
        sdk(node_b, "carol", protobuf=True),
        sdk(node_c, "dave"),
    ]
    api_a = cent.AsyncClient(node_a.api_url, API_KEY)
    try:
        for client in clients:
            await client.connect()
            await subscribed(client, channel)
        stats = await api_a.presence_stats(cent.PresenceStatsRequest(channel=channel))
        assert (stats.num_clients, stats.num_users) == (3, 2)

        await clients[0].disconnect()  # carol still has her node-1 connection

        async def two_clients_left() -> bool:
            now = await api_a.presence_stats(cent.PresenceStatsRequest(channel=channel))
            return now.num_clients == 2

        await until("carol's node-0 connection leaves presence", two_clients_left)
        stats = await api_a.presence_stats(cent.PresenceStatsRequest(channel=channel))
        assert (stats.num_clients, stats.num_users) == (2, 2)
    finally:
        for client in clients:
            await client.disconnect()
        await api_a.close()
