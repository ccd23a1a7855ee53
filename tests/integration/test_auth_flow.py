"""Authentication end to end: connection tokens, refresh and expiry, subscription
tokens, server-side subscriptions, and the server API acting on connections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import cent
import pytest

from tests.integration.clients import (
    BOTH_PROTOCOLS,
    ClientEvents,
    SubEvents,
    api_client,
    new_client,
    sdk_client,
    subscribed,
    value,
)
from tests.node_harness import RunningNode, running_node
from wsfleet.auth import mint_connection_token, mint_subscription_token

SECRET = "auth-flow-secret-that-is-long-enough-for-hs256"
API_KEY = "auth-flow-key"
CLOSE_DELAY = 1.0
"""Seconds an expired connection may stay before the server closes it."""

CONFIG = {
    "channel": {
        "namespaces": [
            {
                "name": "open",
                "allow_subscribe_for_client": True,
                "presence": True,
                "allow_presence_for_client": True,
            },
            # No allow_subscribe_for_client: a subscription token is required.
            {"name": "secret"},
            {"name": "news", "history_size": 10, "history_ttl": 300},
        ]
    }
}


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    overrides = {
        "auth.token_hmac_secret": SECRET,
        "api.key": API_KEY,
        "client.expired_close_delay": CLOSE_DELAY,
        "client.user_personal_channel": True,
    }
    async with running_node(overrides, config=CONFIG) as running:
        yield running


def token(user: str, **kw: Any) -> str:
    return mint_connection_token(SECRET, user=user, **kw)


# -- connection tokens ------------------------------------------------------------------


@BOTH_PROTOCOLS
async def test_valid_token_connects_as_its_user(node: RunningNode, protobuf: bool) -> None:
    async with (
        sdk_client(node, protobuf=protobuf, token=token("alice")) as client,
        api_client(node, API_KEY) as api,
    ):
        sub, _ = await subscribed(client, "open:lobby")
        presence = await sub.presence()
        assert presence.clients[client.client_id].user == "alice"
        api_presence = await api.presence(cent.PresenceRequest(channel="open:lobby"))
        assert api_presence.presence[client.client_id].user == "alice"


@BOTH_PROTOCOLS
async def test_bad_token_disconnects_for_good(node: RunningNode, protobuf: bool) -> None:
    events = ClientEvents()
    forged = mint_connection_token("another-secret-another-secret-xx", user="mallory")
    client = new_client(node, protobuf=protobuf, events=events, token=forged)
    await client.connect()
    try:
        disconnected = await events.next("disconnected")
        assert disconnected.code == 3500
        assert client.state.value == "disconnected"
        assert events.events.pending("connected") == []
    finally:
        await client.disconnect()


async def test_no_token_is_refused_when_anonymous_is_not_allowed(node: RunningNode) -> None:
    events = ClientEvents()
    client = new_client(node, events=events)
    await client.connect()
    try:
        assert (await events.next("disconnected")).code == 3500
    finally:
        await client.disconnect()


@BOTH_PROTOCOLS
async def test_expired_token_is_replaced_through_get_token(
    node: RunningNode, protobuf: bool
) -> None:
    calls = 0

    async def get_token() -> str:
        nonlocal calls
        calls += 1
        return token("alice")

    expired = token("alice", ttl=10, now=time.time() - 60)
    events = ClientEvents()
    async with sdk_client(
        node, protobuf=protobuf, events=events, token=expired, get_token=get_token
    ) as client:
        connected = await events.next("connected")
        assert connected.client == client.client_id
        assert calls == 1
        error = await events.next("error")
        assert error.error.code == 109  # the server said: token expired


async def test_connection_refresh_keeps_the_client_connected(node: RunningNode) -> None:
    issued: list[float] = []

    async def get_token() -> str:
        issued.append(time.time())
        return token("alice", ttl=2)

    events = ClientEvents()
    async with (
        sdk_client(node, events=events, get_token=get_token) as client,
        api_client(node, API_KEY) as api,
    ):
        first_id = client.client_id
        _, sub_events = await subscribed(client, "open:refresh")
        # Stay until the first token is past its expiry and the server's close
        # delay (with a margin): the client must have refreshed to be here.
        deadline = issued[0] + 2 + CLOSE_DELAY + 0.5
        while time.time() < deadline:
            await asyncio.sleep(0.1)
        assert len(issued) >= 2  # the token of the connect, then refreshed ones
        assert events.events.pending("connecting") == []
        assert events.events.pending("disconnected") == []
        assert client.client_id == first_id
        await api.publish(cent.PublishRequest(channel="open:refresh", data={"still": "here"}))
        assert value((await sub_events.next("pub")).data) == {"still": "here"}


async def test_unrefreshed_connection_is_closed_as_expired(node: RunningNode) -> None:
    asked: list[int] = []

    async def failing_get_token() -> str:
        asked.append(1)
        raise RuntimeError("the backend is down")

    failing_events = ClientEvents()
    failing = new_client(
        node, events=failing_events, token=token("bob", ttl=2), get_token=failing_get_token
    )
    static_events = ClientEvents()
    static = new_client(node, events=static_events, token=token("carol", ttl=2))
    await failing.connect()
    await static.connect()
    try:
        await failing_events.next("connected")
        await static_events.next("connected")
        # Both are closed with 3005 after their token expires; the SDK treats it
        # as a reconnect code.
        assert (await failing_events.next("connecting")).code == 3005
        assert (await static_events.next("connecting")).code == 3005
        # Reconnecting with the expired token is refused with 109; without
        # get_token the SDK then gives up as unauthorized.
        unauthorized = await static_events.next("disconnected")
        assert unauthorized.code == 1  # the SDK's "unauthorized"
        # The client with get_token asked for a new token and, without one,
        # never got connected again.
        assert asked, "get_token was never called"
        assert failing_events.events.pending("connected") == []
    finally:
        await failing.disconnect()
        await static.disconnect()


# -- subscription tokens ------------------------------------------------------------------


@BOTH_PROTOCOLS
async def test_subscription_token_required(node: RunningNode, protobuf: bool) -> None:
    channel = "secret:vault"
    async with sdk_client(node, protobuf=protobuf, token=token("alice")) as client:
        refused = {
            "no token": "",
            "token for another channel": mint_subscription_token(
                SECRET, user="alice", channel="secret:other"
            ),
            "token of another user": mint_subscription_token(SECRET, user="bob", channel=channel),
        }
        for case, sub_token in refused.items():
            denied = SubEvents()
            sub = client.new_subscription(channel, denied, token=sub_token)
            await sub.subscribe()
            assert (await denied.next("unsubscribed")).code == 103, case
            client.remove_subscription(sub)

        good_token = mint_subscription_token(SECRET, user="alice", channel=channel)
        sub, events = await subscribed(client, channel, token=good_token)
        async with api_client(node, API_KEY) as api:
            await api.publish(cent.PublishRequest(channel=channel, data={"secret": 42}))
        assert value((await events.next("pub")).data) == {"secret": 42}


async def test_subscription_token_through_get_token(node: RunningNode) -> None:
    asked: list[str] = []

    async def get_sub_token(channel: str) -> str:
        asked.append(channel)
        return mint_subscription_token(SECRET, user="alice", channel=channel)

    async with sdk_client(node, token=token("alice")) as client:
        await subscribed(client, "secret:lazy", get_token=get_sub_token)
        assert asked == ["secret:lazy"]


# -- server-side subscriptions -----------------------------------------------------------


@BOTH_PROTOCOLS
async def test_channels_claim_subscribes_on_connect(node: RunningNode, protobuf: bool) -> None:
    events = ClientEvents()
    conn_token = token("alice", channels=["news:global", "open:alerts"])
    async with (
        sdk_client(node, protobuf=protobuf, events=events, token=conn_token),
        api_client(node, API_KEY) as api,
    ):
        subscribed_ctx = [await events.next("server_subscribed") for _ in range(3)]
        by_channel = {ctx.channel: ctx for ctx in subscribed_ctx}
        assert set(by_channel) == {"news:global", "open:alerts", "#alice"}
        assert by_channel["news:global"].recoverable  # history: server-side subs recover
        for n, channel in enumerate(["news:global", "open:alerts", "news:global"]):
            await api.publish(cent.PublishRequest(channel=channel, data={"n": n}))
        got = [await events.next("server_pub") for _ in range(3)]
        assert [(ctx.channel, value(ctx.pub.data)) for ctx in got] == [
            ("news:global", {"n": 0}),
            ("open:alerts", {"n": 1}),
            ("news:global", {"n": 2}),
        ]


@BOTH_PROTOCOLS
async def test_personal_channel(node: RunningNode, protobuf: bool) -> None:
    events = ClientEvents()
    async with (
        sdk_client(node, protobuf=protobuf, events=events, token=token("dave")),
        api_client(node, API_KEY) as api,
    ):
        assert (await events.next("server_subscribed")).channel == "#dave"
        await api.publish(cent.PublishRequest(channel="#dave", data={"dm": "hi"}))
        await api.publish(cent.PublishRequest(channel="#erin", data={"dm": "not yours"}))
        await api.publish(cent.PublishRequest(channel="#dave", data={"dm": "again"}))
        got = [await events.next("server_pub") for _ in range(2)]
        assert [(c.channel, value(c.pub.data)) for c in got] == [
            ("#dave", {"dm": "hi"}),
            ("#dave", {"dm": "again"}),
        ]


@BOTH_PROTOCOLS
async def test_api_subscribe_and_unsubscribe(node: RunningNode, protobuf: bool) -> None:
    events = ClientEvents()
    async with (
        sdk_client(node, protobuf=protobuf, events=events, token=token("frank")) as client,
        api_client(node, API_KEY) as api,
    ):
        assert (await events.next("server_subscribed")).channel == "#frank"
        await api.subscribe(cent.SubscribeRequest(user="frank", channel="news:pushed"))
        pushed = await events.next("server_subscribed")
        assert pushed.channel == "news:pushed"
        channels = await api.channels(cent.ChannelsRequest(pattern="news:*"))
        assert channels.channels["news:pushed"].num_clients == 1

        await api.publish(cent.PublishRequest(channel="news:pushed", data={"n": 1}))
        first = await events.next("server_pub")
        assert (first.channel, value(first.pub.data)) == ("news:pushed", {"n": 1})

        await api.unsubscribe(cent.UnsubscribeRequest(user="frank", channel="news:pushed"))
        assert (await events.next("server_unsubscribed")).channel == "news:pushed"
        await api.publish(cent.PublishRequest(channel="news:pushed", data={"n": 2}))
        await api.publish(cent.PublishRequest(channel="#frank", data={"marker": True}))
        marker = await events.next("server_pub")
        assert marker.channel == "#frank"  # nothing from news:pushed came before it
        assert client.state.value == "connected"


async def test_api_disconnect_with_a_code(node: RunningNode) -> None:
    gone_events, stays_events, back_events = ClientEvents(), ClientEvents(), ClientEvents()
    async with (
        sdk_client(node, events=gone_events, token=token("gina")) as gone,
        sdk_client(node, protobuf=True, events=stays_events, token=token("gina")) as stays,
        sdk_client(node, events=back_events, token=token("hank")) as back,
        api_client(node, API_KEY) as api,
    ):
        await api.disconnect(
            cent.DisconnectRequest(
                user="gina",
                whitelist=[stays.client_id],
                disconnect=cent.Disconnect(code=4501, reason="banned"),
            )
        )
        ctx = await gone_events.next("disconnected")
        assert (ctx.code, ctx.reason) == (4501, "banned")
        assert gone.state.value == "disconnected"

        # A reconnect code: the SDK comes back by itself with a new connection.
        old_id = back.client_id
        await api.disconnect(
            cent.DisconnectRequest(user="hank", disconnect=cent.Disconnect(code=4001, reason="x"))
        )
        await back_events.next("connected")  # the first connection's event
        assert (await back_events.next("connecting")).code == 4001
        await back_events.next("connected")
        assert back.client_id != old_id

        # Default code: force disconnect, no reconnect.
        await api.disconnect(cent.DisconnectRequest(user="gina"))
        assert (await stays_events.next("disconnected")).code == 3503
