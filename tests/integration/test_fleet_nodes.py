"""Nodes on one Redis act as one fleet: registry, fleet-wide limits and API actions.

Two or three real nodes (in this process, each with its own broker
connections) share a private ``redis-server``; clients are the SDK, the
server API is driven with ``cent`` and plain HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import cent
import pytest
import websockets

from tests.integration.clients import (
    ClientEvents,
    api_client,
    eventually,
    new_client,
    sdk_client,
    subscribed,
    value,
)
from tests.node_harness import RunningNode, running_node
from tests.redis_servers import RedisServer, redis_server
from wsfleet.auth import mint_connection_token

pytestmark = pytest.mark.redis

SECRET = "fleet-nodes-secret-that-is-long-enough-for-hs256"
# Nodes and the test share one event loop: a stall of the loop must never
# make a node drop out by accident, so heartbeats are slow unless a test is
# about a silent node (SHORT); tests that need a fresh view call beat().
HEARTBEAT = 30.0
SHORT = {"fleet.heartbeat_interval": 0.5}
SILENT_FOR = 2 * 0.5 + 0.2  # two short intervals, and the check's own round trips
CONFIG = {
    "channel": {
        "namespaces": [
            {
                "name": "room",
                "history_size": 50,
                "history_ttl": 300,
                "presence": True,
                "allow_subscribe_for_client": True,
            },
            {"name": "lobby", "presence": True, "allow_subscribe_for_client": True},
        ]
    }
}


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def _overrides(redis: RedisServer, prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "broker.url": redis.url,
        "broker.key_prefix": prefix,
        "fleet.heartbeat_interval": HEARTBEAT,
        "auth.token_hmac_secret": SECRET,
        "api.key": "k",
        **extra,
    }


@contextlib.asynccontextmanager
async def fleet_of(
    redis: RedisServer, count: int, **extra: Any
) -> AsyncIterator[list[RunningNode]]:
    """``count`` nodes of one fleet (a fresh key prefix), started in order."""
    prefix = f"fleet-{uuid.uuid4().hex[:8]}"
    async with contextlib.AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(
                running_node(_overrides(redis, prefix, **extra), config=CONFIG)
            )
            for _ in range(count)
        ]
        yield nodes


def token(user: str) -> str:
    return mint_connection_token(SECRET, user=user)


async def post(node: RunningNode, method: str, body: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{node.api_url}/{method}", json=body, headers={"X-API-Key": "k"}) as resp,
    ):
        assert resp.status == 200
        reply: dict[str, Any] = await resp.json()
        return reply


# -- the registry -----------------------------------------------------------------


async def test_info_and_status_list_every_node_of_the_fleet(redis: RedisServer) -> None:
    async with fleet_of(redis, 3) as nodes:
        uids = {n.node.uid for n in nodes}
        async with sdk_client(nodes[1], token=token("ann")):
            reply = await post(nodes[0], "info", {})
            listed = {entry["uid"]: entry for entry in reply["result"]["nodes"]}
            assert set(listed) == uids
            second = listed[nodes[1].node.uid]
            assert second["phase"] == "ready"
            assert second["public"] == [f"127.0.0.1:{nodes[1].node.addresses.public[0][1]}"]
            assert second["internal"] == [f"127.0.0.1:{nodes[1].node.addresses.internal[0][1]}"]

            async def counted() -> bool:
                async with cent.AsyncClient(nodes[2].api_url, "k") as api:
                    info = await api.info(cent.InfoRequest())
                by_uid = {n.uid: n for n in info.nodes}
                return by_uid[nodes[1].node.uid].num_clients == 1

            # Counts travel with the heartbeat.
            await nodes[1].node.fleet.beat()
            await eventually(counted)
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{nodes[2].internal_url}/status") as resp,
            ):
                status = await resp.json()
            assert {n["uid"] for n in status["nodes"]} == uids
            assert status["uid"] == nodes[2].node.uid


async def test_a_stopped_node_leaves_the_registry_at_once(redis: RedisServer) -> None:
    prefix = f"fleet-{uuid.uuid4().hex[:8]}"
    config = _overrides(redis, prefix, **{"fleet.heartbeat_interval": 30.0})
    async with running_node(config, config=CONFIG) as staying:
        async with running_node(config, config=CONFIG) as leaving:
            gone = leaving.node.uid
            assert gone in {n.uid for n in await staying.node.fleet.state.nodes()}
        # No waiting for the 60 s entry to expire: a clean stop says goodbye.
        assert [n.uid for n in await staying.node.fleet.state.nodes()] == [staying.node.uid]


# -- the per-user connection limit ---------------------------------------------------


async def test_user_connection_limit_counts_across_nodes(redis: RedisServer) -> None:
    async with fleet_of(redis, 2, **{"client.user_connection_limit": 2}) as (a, b):
        async with (
            sdk_client(a, token=token("ann")),
            sdk_client(b, token=token("ann")),
            sdk_client(b, token=token("bob")) as bob,
        ):
            events = ClientEvents()
            third = new_client(a, events=events, token=token("ann"))
            await third.connect()
            try:
                refused = await events.next("disconnected")
                assert refused.code == 3504  # connection limit: the SDK does not retry
            finally:
                await third.disconnect()
            assert a.node.stats.limit_hits["user_connections"] == 1
            # Others are served as before.
            assert bob.state.value == "connected"
        # Both of ann's connections closed: the counts went back down fleet-wide.
        async with (
            sdk_client(b, token=token("ann")) as again,
            sdk_client(a, token=token("ann")) as again2,
        ):
            assert again.state.value == again2.state.value == "connected"


async def test_user_connection_limit_stops_counting_a_dead_node(redis: RedisServer) -> None:
    async with (
        fleet_of(redis, 2, **{"client.user_connection_limit": 1}, **SHORT) as (a, b),
        sdk_client(b, token=token("cat")),
    ):
        events = ClientEvents()
        refused = new_client(a, events=events, token=token("cat"))
        await refused.connect()
        assert (await events.next("disconnected")).code == 3504
        await refused.disconnect()
        # Node b stops heartbeating (as if it hung or was cut off): within
        # two intervals its connections stop counting.
        task = b.node.fleet._loop_task
        assert task is not None
        task.cancel()
        await asyncio.sleep(SILENT_FOR)
        async with sdk_client(a, token=token("cat")) as admitted:
            assert admitted.state.value == "connected"


async def test_user_connection_limit_needs_the_broker(redis: RedisServer) -> None:
    # With Redis gone the fleet count cannot be checked: the connect gets a
    # temporary error (the SDK retries), not a permanent refusal.
    with redis_server() as private:
        async with fleet_of(private, 1, **{"client.user_connection_limit": 5}) as (a,):
            private.kill()
            events = ClientEvents()
            client = new_client(a, events=events, token=token("dan"))
            await client.connect()
            try:
                error = await events.next("error")
                assert "connection limit unavailable" in str(error.error)
                assert client.state.value == "connecting"
                private.start()
                await events.next("connected", timeout=15)
            finally:
                await client.disconnect()


# -- fleet-wide server API actions -----------------------------------------------------


async def test_disconnect_through_any_node_reaches_the_user_everywhere(redis: RedisServer) -> None:
    async with fleet_of(redis, 3) as (a, b, c):
        on_b, on_c, kept = ClientEvents(), ClientEvents(), ClientEvents()
        async with (
            sdk_client(b, events=on_b, token=token("eve")),
            sdk_client(c, events=on_c, token=token("eve")),
            sdk_client(c, events=kept, token=token("fay")) as fay,
        ):
            reply = await post(
                a, "disconnect", {"user": "eve", "disconnect": {"code": 4500, "reason": "bye"}}
            )
            assert reply == {"result": {}}
            for events in (on_b, on_c):
                ctx = await events.next("disconnected")
                assert (ctx.code, ctx.reason) == (4500, "bye")
            assert fay.state.value == "connected"
            assert kept.events.pending("disconnected") == []


async def test_subscribe_and_unsubscribe_through_any_node(redis: RedisServer) -> None:
    async with fleet_of(redis, 2) as (a, b), api_client(a, "k") as api:
        events = ClientEvents()
        async with sdk_client(b, events=events, token=token("gus")):
            await api.subscribe(cent.SubscribeRequest(user="gus", channel="room:news"))
            assert (await events.next("server_subscribed")).channel == "room:news"
            await api.publish(cent.PublishRequest(channel="room:news", data={"n": 1}))
            assert value((await events.next("server_pub")).pub.data) == {"n": 1}
            await api.unsubscribe(cent.UnsubscribeRequest(user="gus", channel="room:news"))
            assert (await events.next("server_unsubscribed")).channel == "room:news"


async def test_channels_lists_the_channels_of_every_node(redis: RedisServer) -> None:
    async with (
        fleet_of(redis, 3) as (a, b, c),
        sdk_client(b, token=token("hal")) as on_b,
        sdk_client(c, token=token("ida")) as on_c,
        sdk_client(c, token=token("jon")) as on_c2,
    ):
        await subscribed(on_b, "room:1")
        await subscribed(on_c, "room:1")
        await subscribed(on_c2, "room:2")
        reply = await post(a, "channels", {})
        assert reply["result"]["channels"] == {
            "room:1": {"num_clients": 2},
            "room:2": {"num_clients": 1},
        }
        reply = await post(a, "channels", {"pattern": "room:2"})
        assert reply["result"]["channels"] == {"room:2": {"num_clients": 1}}


async def test_channels_leaves_out_a_node_that_does_not_answer(redis: RedisServer) -> None:
    async with (
        fleet_of(redis, 2, **{"fleet.survey_timeout": 0.3}) as (a, b),
        sdk_client(a, token=token("ola")) as on_a,
        sdk_client(b, token=token("pia")) as on_b,
    ):
        await subscribed(on_a, "room:a")
        await subscribed(on_b, "room:b")
        # b is live in the registry but deaf to the control channel.
        on_control, b.node.fleet.state.on_control = b.node.fleet.state.on_control, None
        reply = await post(a, "channels", {})
        assert reply["result"]["channels"] == {"room:a": {"num_clients": 1}}
        # The counts say they are partial, and whose subscribers are missing.
        assert reply["result"]["unanswered"] == [{"uid": b.node.uid, "name": b.node.name}]
        b.node.fleet.state.on_control = on_control
        reply = await post(a, "channels", {})
        assert set(reply["result"]["channels"]) == {"room:a", "room:b"}
        assert "unanswered" not in reply["result"]


# -- presence -------------------------------------------------------------------------------


async def test_presence_of_a_silent_node_goes_within_two_heartbeats(redis: RedisServer) -> None:
    async with (
        fleet_of(redis, 2, **SHORT) as (a, b),
        api_client(a, "k") as api,
        sdk_client(a, token=token("kim")) as on_a,
        sdk_client(b, token=token("lea")) as on_b,
    ):
        await subscribed(on_a, "room:hall")
        await subscribed(on_b, "room:hall")
        reply = await api.presence(cent.PresenceRequest(channel="room:hall"))
        assert {i.user for i in reply.presence.values()} == {"kim", "lea"}
        task = b.node.fleet._loop_task
        assert task is not None
        task.cancel()  # b goes silent with its clients still subscribed
        await asyncio.sleep(SILENT_FOR)
        reply = await api.presence(cent.PresenceRequest(channel="room:hall"))
        assert {i.user for i in reply.presence.values()} == {"kim"}
        stats = await api.presence_stats(cent.PresenceStatsRequest(channel="room:hall"))
        assert (stats.num_clients, stats.num_users) == (1, 1)


async def test_presence_is_written_again_after_redis_lost_its_data() -> None:
    # Without it, presence would read empty until each connection's next
    # refresh (presence_update_interval, 25 s by default, longer than the wait).
    # No history on the channel: nothing makes the client resubscribe.
    with redis_server() as private:
        async with (
            fleet_of(private, 1, **SHORT) as (a,),
            sdk_client(a, token=token("max")) as client,
        ):
            await subscribed(client, "lobby:lost")
            private.kill()
            private.start()  # empty: no persistence

            async def listed() -> bool:
                reply = await post(a, "presence", {"channel": "lobby:lost"})
                users = {e["user"] for e in reply.get("result", {}).get("presence", {}).values()}
                return users == {"max"}

            await eventually(listed, within=10)


# -- failure of the broker ------------------------------------------------------------------


async def heartbeat_shown(node: RunningNode, *, failing: bool) -> bool:
    """Whether /status and /metrics both show the heartbeat failing (or not)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{node.internal_url}/status") as resp:
            status = await resp.json()
        async with http.get(f"{node.internal_url}/metrics") as resp:
            metrics = await resp.text()
    shown = bool(status["fleet_error"]) and "wsfleet_fleet_heartbeat_failing 1.0" in metrics
    clear = status["fleet_error"] == "" and "wsfleet_fleet_heartbeat_failing 0.0" in metrics
    return shown if failing else clear and "wsfleet_fleet_nodes 1.0" in metrics


async def test_publish_api_answers_a_temporary_error_while_redis_is_down() -> None:
    with redis_server() as private:
        async with fleet_of(private, 1, **SHORT) as (a,):
            private.kill()
            reply = await post(a, "publish", {"channel": "room:x", "data": {}})
            assert reply["error"]["code"] == 100
            assert reply["error"]["temporary"] is True
            assert "broker" in reply["error"]["message"]
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{a.internal_url}/readyz") as resp:
                    assert resp.status == 503
                    assert "redis" in await resp.text()
                async with http.get(f"{a.internal_url}/livez") as resp:
                    assert resp.status == 200
            await eventually(lambda: heartbeat_shown(a, failing=True))
            private.start()
            await eventually(lambda: heartbeat_shown(a, failing=False), within=15)

            async def published() -> bool:
                reply = await post(a, "publish", {"channel": "room:x", "data": {}})
                return "result" in reply

            await eventually(published, within=15)


# -- the fleet-wide connection rate ----------------------------------------------------------


async def test_fleet_connection_rate_is_shared_and_refused_with_503(redis: RedisServer) -> None:
    # 4 per second for the fleet, two nodes: each takes 2 per second.
    async with fleet_of(redis, 2, **{"fleet.connection_rate_limit": 4}) as (a, b):
        for node in (a, b):
            # Wait until each node has seen the other (its share is then 2).
            async def both_seen(node: RunningNode = node) -> bool:
                await node.node.fleet.beat()
                return len(node.node.fleet.nodes) == 2

            await eventually(both_seen)
        statuses: list[int] = []
        retry_after: list[str] = []
        for _ in range(10):
            try:
                async with websockets.connect(a.ws_url, proxy=None):
                    statuses.append(101)
            except websockets.InvalidStatus as exc:
                statuses.append(exc.response.status_code)
                retry_after.append(exc.response.headers.get("Retry-After", ""))
        # The share (2 at once), plus whatever refilled while the attempts ran.
        assert statuses[:2] == [101, 101]
        assert 503 in statuses and set(statuses) == {101, 503}
        assert all(int(v) >= 1 for v in retry_after)
        assert a.node.stats.limit_hits["fleet_connection_rate"] == statuses.count(503)
        assert a.node.stats.handshakes_refused["fleet_connection_rate"] == statuses.count(503)
        # The other node's share is its own.
        async with websockets.connect(b.ws_url, proxy=None):
            pass
