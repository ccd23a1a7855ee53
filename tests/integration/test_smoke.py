"""The shortest path: an SDK subscriber gets what the API publishes."""

from __future__ import annotations

import cent

from tests.integration.clients import api_client, sdk_client, subscribed, value
from tests.node_harness import RunningNode


async def test_sdk_receives_api_publication(dev_node: RunningNode) -> None:
    async with sdk_client(dev_node) as client, api_client(dev_node) as api:
        _, events = await subscribed(client, "news")
        result = await api.publish(cent.PublishRequest(channel="news", data={"n": 1}))
        assert result.offset == 1
        assert value((await events.next("pub")).data) == {"n": 1}
