from __future__ import annotations

import asyncio

import cent
from centrifuge import Client, PublicationContext, SubscriptionEventHandler

from tests.node_harness import RunningNode


async def test_sdk_receives_api_publication(dev_node: RunningNode) -> None:
    got: asyncio.Queue[object] = asyncio.Queue()

    class Handler(SubscriptionEventHandler):
        async def on_publication(self, ctx: PublicationContext) -> None:
            await got.put(ctx.pub.data)

    client = Client(dev_node.ws_url)
    sub = client.new_subscription("news", Handler())
    await client.connect()
    await sub.subscribe()
    api = cent.AsyncClient(dev_node.api_url, "dev")
    try:
        result = await api.publish(cent.PublishRequest(channel="news", data={"n": 1}))
        assert result.offset == 1
        assert await asyncio.wait_for(got.get(), 5) == {"n": 1}
    finally:
        await client.disconnect()
        await api.close()
