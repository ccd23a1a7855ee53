"""Presence, presence stats and join/leave with two authenticated users."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import cent
import pytest
from centrifuge import ReplyError

from tests.integration.clients import (
    BOTH_PROTOCOLS,
    WAIT,
    api_client,
    sdk_client,
    subscribed,
)
from tests.node_harness import RunningNode, running_node
from wsfleet.auth import mint_connection_token

SECRET = "presence-test-secret-of-at-least-32-bytes"
API_KEY = "presence-key"

CONFIG = {
    "channel": {
        "namespaces": [
            {
                "name": "room",
                "presence": True,
                "join_leave": True,
                "allow_subscribe_for_client": True,
                "allow_presence_for_subscriber": True,
            },
            {
                "name": "lobby",
                "presence": True,
                "allow_subscribe_for_client": True,
                "allow_presence_for_client": True,
            },
            {"name": "quiet", "allow_subscribe_for_client": True},  # no presence
        ]
    }
}


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    overrides = {"auth.token_hmac_secret": SECRET, "api.key": API_KEY}
    async with running_node(overrides, config=CONFIG) as running:
        yield running


def token(user: str, **kw: Any) -> str:
    return mint_connection_token(SECRET, user=user, **kw)


async def _until(condition: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    """Poll an eventually-true condition (presence removal is asynchronous)."""

    async def loop() -> None:
        while not await condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), timeout)


@BOTH_PROTOCOLS
async def test_presence_from_the_sdk_and_cent(node: RunningNode, protobuf: bool) -> None:
    channel = "room:presence"
    async with (
        sdk_client(node, protobuf=protobuf, token=token("alice", info={"name": "Alice"})) as alice,
        sdk_client(node, protobuf=protobuf, token=token("bob")) as bob,
        api_client(node, API_KEY) as api,
    ):
        alice_sub, _ = await subscribed(alice, channel)
        await subscribed(bob, channel)

        result = await alice_sub.presence()
        assert set(result.clients) == {alice.client_id, bob.client_id}
        assert result.clients[alice.client_id].user == "alice"
        assert result.clients[bob.client_id].user == "bob"
        conn_info = result.clients[alice.client_id].conn_info
        assert conn_info == (b'{"name":"Alice"}' if protobuf else {"name": "Alice"})

        stats = await bob.presence_stats(channel)
        assert (stats.num_clients, stats.num_users) == (2, 2)

        api_presence = await api.presence(cent.PresenceRequest(channel=channel))
        assert {c: i.user for c, i in api_presence.presence.items()} == {
            alice.client_id: "alice",
            bob.client_id: "bob",
        }
        assert api_presence.presence[alice.client_id].conn_info == {"name": "Alice"}
        api_stats = await api.presence_stats(cent.PresenceStatsRequest(channel=channel))
        assert (api_stats.num_clients, api_stats.num_users) == (2, 2)


async def test_two_connections_of_one_user_count_once_in_users(node: RunningNode) -> None:
    channel = "lobby:stats"
    async with (
        sdk_client(node, token=token("carol")) as first,
        sdk_client(node, protobuf=True, token=token("carol")) as second,
        sdk_client(node, token=token("dave")) as third,
        api_client(node, API_KEY) as api,
    ):
        for client in (first, second, third):
            await subscribed(client, channel)
        stats = await api.presence_stats(cent.PresenceStatsRequest(channel=channel))
        assert (stats.num_clients, stats.num_users) == (3, 2)
        # allow_presence_for_client: a connection that is not subscribed may ask too.
        async with sdk_client(node, token=token("erin")) as outsider:
            stats_seen = await outsider.presence_stats(channel)
            assert (stats_seen.num_clients, stats_seen.num_users) == (3, 2)


async def test_presence_needs_the_right_to_ask(node: RunningNode) -> None:
    async with sdk_client(node, token=token("frank")) as client:
        with pytest.raises(ReplyError) as err:
            await client.presence("room:closed")  # subscribers only, and frank is not one
        assert err.value.code == 103
        with pytest.raises(ReplyError) as err:
            await client.presence("quiet:x")
        assert err.value.code == 108  # presence is off for the namespace


@BOTH_PROTOCOLS
async def test_join_and_leave_events(node: RunningNode, protobuf: bool) -> None:
    channel = "room:joins"
    async with sdk_client(node, protobuf=protobuf, token=token("alice")) as alice:
        _, watch = await subscribed(alice, channel, join_leave=True)

        async with sdk_client(node, protobuf=not protobuf, token=token("bob")) as bob:
            bob_sub, bob_events = await subscribed(bob, channel, join_leave=True)
            joined = await watch.next("join")
            assert (joined.client, joined.user) == (bob.client_id, "bob")

            await bob_sub.unsubscribe()
            left = await watch.next("leave")
            assert (left.client, left.user) == (bob.client_id, "bob")

            await bob_sub.subscribe()
            rejoined = await watch.next("join")
            assert rejoined.client == bob.client_id
        # Bob's connection closed: his leave comes with it.
        gone = await watch.next("leave")
        assert (gone.client, gone.user) == (bob.client_id, "bob")


async def test_no_join_leave_events_unless_asked(node: RunningNode) -> None:
    channel = "room:silent"
    async with (
        sdk_client(node, token=token("alice")) as alice,
        api_client(node, API_KEY) as api,
    ):
        _, watch = await subscribed(alice, channel)  # join_leave not asked
        async with sdk_client(node, token=token("bob")) as bob:
            await subscribed(bob, channel)
        await api.publish(cent.PublishRequest(channel=channel, data={"marker": True}))
        await watch.next("pub")
        assert watch.events.pending("join") == []
        assert watch.events.pending("leave") == []


async def test_presence_disappears_after_disconnect(node: RunningNode) -> None:
    channel = "room:gone"
    async with (
        sdk_client(node, token=token("alice")) as alice,
        api_client(node, API_KEY) as api,
    ):
        alice_sub, _ = await subscribed(alice, channel)
        async with sdk_client(node, protobuf=True, token=token("bob")) as bob:
            await subscribed(bob, channel)
            bob_id = bob.client_id
            assert bob_id in (await alice_sub.presence()).clients

        async def bob_gone() -> bool:
            presence = await api.presence(cent.PresenceRequest(channel=channel))
            return bob_id not in presence.presence

        await _until(bob_gone)
        result = await alice_sub.presence()
        assert set(result.clients) == {alice.client_id}
        stats = await api.presence_stats(cent.PresenceStatsRequest(channel=channel))
        assert (stats.num_clients, stats.num_users) == (1, 1)

        # Unsubscribing removes presence too, without closing the connection.
        await alice_sub.unsubscribe()

        async def empty() -> bool:
            stats = await api.presence_stats(cent.PresenceStatsRequest(channel=channel))
            return stats.num_clients == 0

        await _until(empty)
