"""Namespace options that depend on who asks or override what the client asked:
user-limited channels, subscriber-only publish and history, subscription token
expiry, forced recovery and forced join/leave."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from centrifuge import ReplyError

from tests.integration.clients import SubEvents, sdk_client, subscribed
from tests.integration.raw import json_replies, raw_client
from tests.node_harness import RunningNode, running_node
from wsfleet.auth import mint_connection_token, mint_subscription_token

SECRET = "permissions-secret-that-is-long-enough-for-hs256"

CONFIG = {
    "channel": {
        "namespaces": [
            {"name": "dialog", "allow_user_limited_channels": True},
            {
                "name": "club",
                "allow_subscribe_for_client": True,
                "allow_publish_for_subscriber": True,
                "allow_history_for_subscriber": True,
                "history_size": 10,
                "history_ttl": 300,
            },
            {"name": "vault"},  # subscription tokens only
            {
                "name": "forced",
                "allow_subscribe_for_client": True,
                "history_size": 10,
                "history_ttl": 300,
                "force_recovery": True,
                "join_leave": True,
                "force_push_join_leave": True,
            },
        ]
    }
}


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    overrides = {"auth.token_hmac_secret": SECRET, "client.expired_close_delay": 0}
    async with running_node(overrides, config=CONFIG) as running:
        yield running


def token(user: str) -> str:
    return mint_connection_token(SECRET, user=user)


async def test_user_limited_channel_admits_only_the_listed_users(node: RunningNode) -> None:
    channel = "dialog:talk#alice,bob"
    for user in ("alice", "bob"):
        async with sdk_client(node, token=token(user)) as client:
            await subscribed(client, channel)
    async with sdk_client(node, token=token("carol")) as carol:
        denied = SubEvents()
        await carol.new_subscription(channel, denied).subscribe()
        assert (await denied.next("unsubscribed")).code == 103


async def test_publish_and_history_are_for_subscribers_only(node: RunningNode) -> None:
    async with sdk_client(node, token=token("alice")) as client:
        for attempt in (client.publish("club:room", {"hi": 1}), client.history("club:room")):
            with pytest.raises(ReplyError) as exc:
                await attempt
            assert exc.value.code == 103
        await subscribed(client, "club:room")
        await client.publish("club:room", {"hi": 2})
        history = await client.history("club:room", limit=-1)
        assert [p.data for p in history.publications] == [{"hi": 2}]


async def test_an_unrefreshed_subscription_token_ends_the_subscription_with_2501(
    node: RunningNode,
) -> None:
    sub_token = mint_subscription_token(SECRET, user="alice", channel="vault:gold", ttl=1)
    async with raw_client(node, token=token("alice")) as ws:
        request = {"channel": "vault:gold", "token": sub_token}
        await ws.send(json.dumps({"id": 2, "subscribe": request}))
        (reply,) = await json_replies(ws)
        assert reply["subscribe"]["expires"] and reply["subscribe"]["ttl"] == 1
        # No sub_refresh: once the token expires the server unsubscribes with
        # 2501, a code the SDKs answer by resubscribing with a fresh token.
        (push,) = await json_replies(ws)
        assert push["push"]["channel"] == "vault:gold"
        assert push["push"]["unsubscribe"]["code"] == 2501
        assert ws.close_code is None  # the connection itself stays


async def test_forced_options_apply_to_a_client_that_did_not_ask(node: RunningNode) -> None:
    channel = "forced:room"
    async with sdk_client(node, token=token("alice")) as alice:
        # Neither recoverable nor join_leave asked for.
        _, events = await subscribed(alice, channel)
        first = await events.next("subscribed")
        assert first.recoverable  # force_recovery
        async with sdk_client(node, token=token("bob")) as bob:
            await subscribed(bob, channel)
            assert (await events.next("join")).user == "bob"  # force_push_join_leave
        assert (await events.next("leave")).user == "bob"
