"""After the broker restores a lost delivery path, subscribers recover what they missed.

The outage is made deterministic: the node's broker subscription to the
channel is dropped behind the hub's back (as a lost pub/sub connection
would), publications land in history only, then the broker reports the
channel resubscribed.
"""

from __future__ import annotations

import asyncio

import cent
import pytest

from tests.integration.clients import ClientEvents, api_client, sdk_client, subscribed, value
from tests.node_harness import running_node
from wsfleet.auth import mint_connection_token

NAMESPACES = {
    "channel": {
        "namespaces": [
            {
                "name": "feed",
                "history_size": 100,
                "history_ttl": 300,
                "allow_subscribe_for_anonymous": True,
            }
        ]
    }
}


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_subscribers_recover_publications_missed_during_an_outage(protobuf: bool) -> None:
    async with running_node(
        {"auth.allow_anonymous_connect_without_token": True, "api.key": "k"}, config=NAMESPACES
    ) as node:
        channel = "feed:prices"
        api = cent.AsyncClient(node.api_url, "k")
        try:
            async with sdk_client(node, protobuf=protobuf) as client:
                _, events = await subscribed(client, channel, recoverable=True)
                await events.next("subscribed")
                await api.publish(cent.PublishRequest(channel=channel, data={"n": 1}))
                assert value((await events.next("pub")).data) == {"n": 1}

                broker = node.node.broker
                await broker.unsubscribe(channel)  # delivery path lost
                for n in (2, 3, 4):
                    await api.publish(cent.PublishRequest(channel=channel, data={"n": n}))
                await asyncio.sleep(0.1)
                await broker.subscribe(channel)  # restored...
                assert broker.on_resubscribed is not None
                broker.on_resubscribed({channel})  # ...and reported, as a broker does

                resubscribed = await events.next("subscribed")
                assert resubscribed.was_recovering and resubscribed.recovered
                missed = [value((await events.next("pub")).data) for _ in range(3)]
                assert missed == [{"n": 2}, {"n": 3}, {"n": 4}]
                await api.publish(cent.PublishRequest(channel=channel, data={"n": 5}))
                assert value((await events.next("pub")).data) == {"n": 5}
                assert node.node.stats.gaps_detected == 1
        finally:
            await api.close()


async def test_a_server_side_subscription_behind_after_an_outage_reconnects_and_recovers() -> None:
    # The client cannot resubscribe a server-side channel by itself: the node
    # closes with 3010 (insufficient state), the SDK reconnects and recovers
    # through its connect command.
    secret = "outage-secret-that-is-long-enough-for-hs256"
    overrides = {
        "dev": True,
        "auth.token_hmac_secret": secret,
        "client.user_personal_channel": True,
    }
    async with running_node(overrides) as node, api_client(node) as api:
        events = ClientEvents()
        token = mint_connection_token(secret, user="alice")
        async with sdk_client(node, events=events, token=token):
            assert (await events.next("server_subscribed")).channel == "#alice"
            await api.publish(cent.PublishRequest(channel="#alice", data={"n": 1}))
            assert value((await events.next("server_pub")).pub.data) == {"n": 1}

            broker = node.node.broker
            await broker.unsubscribe("#alice")
            for n in (2, 3):
                await api.publish(cent.PublishRequest(channel="#alice", data={"n": n}))
            await broker.subscribe("#alice")
            assert broker.on_resubscribed is not None
            broker.on_resubscribed({"#alice"})

            assert (await events.next("connecting")).code == 3010
            again = await events.next("server_subscribed")
            assert again.was_recovering and again.recovered
            missed = [value((await events.next("server_pub")).pub.data) for _ in range(2)]
            assert missed == [{"n": 2}, {"n": 3}]
