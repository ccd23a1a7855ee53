"""A node killed with SIGKILL leaves the fleet within the stated bound; limits span processes.

What this proves, with real ``wsfleet serve`` processes on a private Redis:

* the bound of docs/topics/fleet.md: two heartbeat intervals after a node is
  SIGKILLed (no goodbye of any kind), it is gone from the registry (``info``
  on the survivors) and its clients are gone from presence and presence
  stats, although their presence entries are far from their TTL;
* the per-user connection limit counts the connections on every node, and
  stops counting those of a killed node within the same bound.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from typing import Any

import cent

from tests.fleet.conftest import API_KEY, CONFIG, token
from tests.fleet.processes import fleet
from tests.integration.clients import ClientEvents, new_client, subscribed
from tests.redis_servers import redis_server

# Short, to keep the test quick, but a node starved of CPU for two intervals
# (a loaded 2-core CI machine) would really drop out: not shorter than this.
HEARTBEAT = 1.0
BOUND = 2 * HEARTBEAT
# The bound runs from the node's last heartbeat, which is before the kill; the
# margin covers only the API round trips of the check itself.
MARGIN = 0.3


def _config(**client: Any) -> dict[str, Any]:
    config = copy.deepcopy(CONFIG)
    config["fleet"] = {"heartbeat_interval": HEARTBEAT}
    config["client"] = {"presence_ttl": 600, **client}
    return config


async def test_a_sigkilled_node_leaves_registry_and_presence_within_two_heartbeats() -> None:
    channel = f"room:{uuid.uuid4().hex[:8]}"
    with redis_server() as redis:
        async with fleet(3, redis.url, config=_config()) as nodes:
            victim, survivor = nodes[0], nodes[2]
            clients = [new_client(n, token=token(f"user-{i}")) for i, n in enumerate(nodes)]
            api = cent.AsyncClient(survivor.api_url, API_KEY)
            try:
                for client in clients:
                    await client.connect()
                    await subscribed(client, channel)
                presence = await api.presence(cent.PresenceRequest(channel=channel))
                assert sorted(i.user for i in presence.presence.values()) == [
                    "user-0",
                    "user-1",
                    "user-2",
                ]
                info = await api.info(cent.InfoRequest())
                assert sorted(n.name for n in info.nodes) == ["node-0", "node-1", "node-2"]

                victim.kill()
                await asyncio.sleep(BOUND + MARGIN)

                info = await api.info(cent.InfoRequest())
                assert sorted(n.name for n in info.nodes) == ["node-1", "node-2"]
                presence = await api.presence(cent.PresenceRequest(channel=channel))
                assert sorted(i.user for i in presence.presence.values()) == ["user-1", "user-2"]
                stats = await api.presence_stats(cent.PresenceStatsRequest(channel=channel))
                assert (stats.num_clients, stats.num_users) == (2, 2)
            finally:
                await api.close()
                for client in clients:
                    await client.disconnect()


async def test_the_per_user_limit_counts_every_process_and_forgets_a_killed_one() -> None:
    with redis_server() as redis:
        async with fleet(3, redis.url, config=_config(user_connection_limit=2)) as nodes:
            held = [new_client(nodes[i], token=token("ann")) for i in (0, 1)]
            other = new_client(nodes[2], token=token("bob"))
            events = ClientEvents()
            refused = new_client(nodes[2], events=events, token=token("ann"))
            try:
                for client in [*held, other]:
                    await client.connect()
                    await client.ready(timeout=10)
                await refused.connect()
                code = (await events.next("disconnected")).code
                assert code == 3504, f"ann's third connection: disconnect {code}, not 3504"
                assert other.state.value == "connected"
                await refused.disconnect()

                nodes[0].kill()  # ann's connection there dies with it, unannounced
                await asyncio.sleep(BOUND + MARGIN)
                admitted = new_client(nodes[2], token=token("ann"))
                try:
                    await admitted.connect()
                    await admitted.ready(timeout=10)
                finally:
                    await admitted.disconnect()
            finally:
                for client in [*held, other, refused]:
                    await client.disconnect()
