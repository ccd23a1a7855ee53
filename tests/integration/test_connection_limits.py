"""The node's connection limits, end to end: who may open a WebSocket, and for how long.

A real node in the test's loop, real clients. For each limit: the offender
gets a clear HTTP status (before any upgrade, with ``Retry-After``) or close
code, the clients already connected keep receiving every publication, the
refusal is counted in /metrics, and 0 turns the limit off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator

import aiohttp
import cent
import pytest
from websockets.asyncio.client import ClientConnection

from tests.integration.clients import (
    WAIT,
    ClientEvents,
    api_client,
    eventually,
    http_get,
    new_client,
    scrape,
    sdk_client,
    subscribed,
    value,
    watching,
)
from tests.integration.raw import (
    closed_with,
    handshake,
    hold_open,
    json_replies,
    raw_client,
    refused,
)
from tests.node_harness import RunningNode, running_node

REFUSED = 'wsfleet_handshakes_refused_total{{reason="{}"}}'
HITS = 'wsfleet_limit_hits_total{{limit="{}"}}'


@pytest.fixture(autouse=True)
def nothing_crashes(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No error is logged (a failed task, a callback that raised) while a limit works."""
    yield
    errors = [r.getMessage() for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert errors == []


async def counted(node: RunningNode, limit: str) -> tuple[float, float]:
    """How often /metrics says ``limit`` refused a handshake: (refused, limit hits)."""
    metrics = await scrape(node)
    return metrics.get(REFUSED.format(limit), 0), metrics.get(HITS.format(limit), 0)


async def ping(ws: ClientConnection, cmd_id: int) -> None:
    """A ping command on a connected raw client, answered."""
    await ws.send(json.dumps({"id": cmd_id, "ping": {}}))
    (reply,) = await json_replies(ws)
    assert reply == {"id": cmd_id, "ping": {}}


# -- server.connection_limit --------------------------------------------------------------


async def test_connection_limit_refuses_with_503_and_readyz_fails_until_one_leaves() -> None:
    async with (
        running_node({"dev": True, "server.connection_limit": 3}) as node,
        watching(node) as watcher,
        raw_client(node) as connected,
        raw_client(node, connect=False) as unconnected,
    ):
        # Three open WebSockets: the watcher, a connected client, and one that has
        # upgraded without sending connect yet (it counts: it holds a socket).
        for protobuf in (False, True):
            refusal = await refused(node, protobuf=protobuf)
            assert refusal.status == 503 and refusal.retry_after >= 1
            assert "connection limit" in refusal.body
        await watcher.publish()
        status, body = await http_get(node, "/readyz")
        assert status == 503 and "connection limit" in body
        metrics = await scrape(node)
        assert metrics["wsfleet_websockets"] == 3
        assert metrics["wsfleet_connection_limit"] == 3
        assert metrics["wsfleet_connections"] == 2  # the unconnected one is no client yet
        assert metrics["wsfleet_ready"] == 0
        assert await counted(node, "connection_limit") == (2, 2)
        status, body = await http_get(node, "/status")
        assert json.loads(body)["limits"] == {
            "connection_limit": 3,
            "websockets": 3,
            "addresses": 1,
        }
        await watcher.check()
        await ping(connected, 2)

        # An SDK client starts trying while the node is full: refused, it retries.
        events = ClientEvents()
        late = new_client(node, events=events)
        await late.connect()
        try:
            await events.next("error")
            await watcher.publish()
            await unconnected.close()
            await late.ready(WAIT)  # in as soon as a place is free
            assert node.node.admission.open == 3  # the unconnected one left first
            _, late_sub = await subscribed(late, "watched")
            await watcher.publish()
            await watcher.check()
            assert [p.offset for p in await late_sub.take("pub", 1)] == [watcher.published]
            status, body = await http_get(node, "/readyz")
            assert status == 503 and "connection limit" in body  # full again
            refusals, hits = await counted(node, "connection_limit")
            assert refusals == hits >= 3  # the SDK's attempts while full count too
        finally:
            await late.disconnect()
        # One leaves: ready again, and a new client gets in.
        await eventually(lambda: node.node.admission.open == 2)
        assert (await http_get(node, "/readyz"))[0] == 200
        assert (await scrape(node))["wsfleet_ready"] == 1
        async with raw_client(node) as newcomer:
            await ping(newcomer, 2)
        await ping(connected, 3)


async def test_readyz_answers_200_again_when_an_unconnected_websocket_leaves() -> None:
    async with running_node({"dev": True, "server.connection_limit": 1}) as node:
        async with raw_client(node, connect=False):
            status, body = await http_get(node, "/readyz")
            assert status == 503 and "connection limit (1)" in body
        await eventually(lambda: node.node.admission.open == 0)
        assert await http_get(node, "/readyz") == (200, "ready\n")


async def test_concurrent_handshakes_never_pass_the_cap() -> None:
    async with (
        running_node({"dev": True, "server.connection_limit": 5}) as node,
        contextlib.AsyncExitStack() as stack,
    ):
        statuses = await hold_open(node, stack, 20)
        assert sorted(statuses) == [101] * 5 + [503] * 15
        assert node.node.admission.open == 5
        assert await counted(node, "connection_limit") == (15, 15)


# -- server.connection_rate_limit and connection_rate_burst -------------------------------


@pytest.mark.parametrize(
    ("rate", "burst", "passes"),
    [(1, 3, 3), (2, 0, 2)],
    ids=["burst", "default_burst_is_one_second"],
)
async def test_connection_rate_lets_the_burst_in_then_503_until_retry_after(
    rate: float, burst: int, passes: int
) -> None:
    overrides = {
        "dev": True,
        "server.connection_rate_limit": rate,
        "server.connection_rate_burst": burst,
    }
    async with running_node(overrides) as node, watching(node) as watcher:
        # The watcher took one of the burst; the rest pass, the next is refused.
        let_in = [await handshake(node) for _ in range(passes - 1)]
        assert let_in == [None] * (passes - 1)
        refusal = await refused(node)
        assert refusal.status == 503 and refusal.retry_after >= 1
        assert "rate" in refusal.body
        await watcher.publish()
        await watcher.check()
        assert await counted(node, "connection_rate") == (1, 1)
        await asyncio.sleep(refusal.retry_after)  # as the client was told
        assert await handshake(node) is None
        await watcher.publish()
        await watcher.check()


async def test_a_request_that_is_no_websocket_upgrade_spends_no_connection_rate() -> None:
    """A plain GET of the WebSocket path (a load balancer's health check, a scanner)
    is answered 400 and opens nothing: it must not use up real clients' rate."""
    overrides = {
        "dev": True,
        "server.connection_rate_limit": 0.1,
        "server.connection_rate_burst": 1,
    }
    async with running_node(overrides) as node, aiohttp.ClientSession() as http:
        async with http.get(node.ws_url.replace("ws://", "http://", 1)) as response:
            assert response.status == 400
        assert await handshake(node) is None
        assert await counted(node, "connection_rate") == (0, 0)


# -- server.ip_connection_limit and server.trusted_proxies ---------------------------------


async def test_ip_connection_limit_refuses_a_second_connection_from_one_address() -> None:
    overrides = {"dev": True, "server.ip_connection_limit": 1}
    async with running_node(overrides) as node, watching(node) as watcher:
        # The watcher holds 127.0.0.1's one connection.
        refusal = await refused(node)
        assert refusal.status == 429 and refusal.retry_after >= 1
        assert "address" in refusal.body
        # Without trusted proxies X-Forwarded-For is anyone's to forge: ignored.
        forged = await refused(node, headers={"X-Forwarded-For": "1.1.1.1"})
        assert forged.status == 429
        # Another address has its own count.
        async with raw_client(node, source="127.0.0.2") as other:
            await ping(other, 2)
            assert (await refused(node, source="127.0.0.2")).status == 429
            assert {s.remote for s in node.node.registry} == {"127.0.0.1", "127.0.0.2"}
            await watcher.publish()
        assert await counted(node, "ip_connection_limit") == (3, 3)
        await watcher.check()
        # Its place is free again once it left.
        await eventually(lambda: node.node.admission.addresses == 1)
        async with raw_client(node, source="127.0.0.2", headers={"X-Forwarded-For": "1.1.1.1"}):
            assert {s.remote for s in node.node.registry} == {"127.0.0.1", "127.0.0.2"}


async def test_behind_a_trusted_proxy_each_forwarded_address_has_its_own_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    overrides = {
        "dev": True,
        "server.ip_connection_limit": 1,
        "server.trusted_proxies": ["127.0.0.1"],
    }
    caplog.set_level(logging.INFO, logger="wsfleet.client")
    async with (
        running_node(overrides) as node,
        watching(node) as watcher,  # no header: counted as the proxy itself, 127.0.0.1
        contextlib.AsyncExitStack() as stack,
    ):
        for forwarded in ("1.1.1.1", "2.2.2.2", "1.2.3.4, 10.9.9.9"):
            ws = await stack.enter_async_context(
                raw_client(node, headers={"X-Forwarded-For": forwarded})
            )
            await ping(ws, 2)
        # The rightmost address the proxy did not add itself is the client: a
        # forged "1.2.3.4" to the left of it changes nothing.
        assert {s.remote for s in node.node.registry} == {
            "127.0.0.1",
            "1.1.1.1",
            "2.2.2.2",
            "10.9.9.9",
        }
        assert {r.remote for r in caplog.records if r.getMessage() == "connected"} >= {
            "1.1.1.1",
            "10.9.9.9",
        }
        for forwarded in ("1.1.1.1", "10.9.9.9", "5.5.5.5, 2.2.2.2"):
            refusal = await refused(node, headers={"X-Forwarded-For": forwarded})
            assert refusal.status == 429 and refusal.retry_after >= 1
        assert (await refused(node)).status == 429  # the proxy's own address, too
        await watcher.publish()
        # A peer that is no trusted proxy is counted as itself, whatever it says.
        await stack.enter_async_context(
            raw_client(node, source="127.0.0.2", headers={"X-Forwarded-For": "3.3.3.3"})
        )
        untrusted = await refused(node, source="127.0.0.2", headers={"X-Forwarded-For": "4.4.4.4"})
        assert untrusted.status == 429
        assert "127.0.0.2" in {s.remote for s in node.node.registry}
        assert await counted(node, "ip_connection_limit") == (5, 5)
        status, body = await http_get(node, "/status")
        assert json.loads(body)["limits"]["addresses"] == 5
        await watcher.publish()
        await watcher.check()


async def test_a_forged_first_x_forwarded_for_line_does_not_name_the_client() -> None:
    """A proxy may append its hop as a header line of its own (HAProxy's ``option
    forwardfor`` does): the lines then read as one comma-joined list, in order
    (RFC 9110, 5.3), and the client's own line is the leftmost, forgeable part."""
    overrides = {
        "dev": True,
        "server.ip_connection_limit": 1,
        "server.trusted_proxies": ["127.0.0.1"],
    }
    async with running_node(overrides) as node:
        forged_then_real = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "1.1.1.1")]
        async with raw_client(node, headers=forged_then_real) as ws:
            await ping(ws, 2)
            assert {s.remote for s in node.node.registry} == {"1.1.1.1"}
            again = [("X-Forwarded-For", "7.7.7.7"), ("X-Forwarded-For", "1.1.1.1")]
            assert (await refused(node, headers=again)).status == 429


# -- every limit at 0 is off ----------------------------------------------------------------


async def test_limits_at_zero_let_everyone_in_and_keep_them() -> None:
    overrides = {
        "dev": True,
        "server.connection_limit": 0,
        "server.ip_connection_limit": 0,
        "server.connection_rate_limit": 0,
        "server.connection_rate_burst": 0,
        "client.max_connection_lifetime": 0,
    }
    async with (
        running_node(overrides) as node,
        watching(node) as watcher,
        contextlib.AsyncExitStack() as stack,
    ):
        statuses = await hold_open(node, stack, 60)  # all from 127.0.0.1, all at once
        assert statuses == [101] * 60
        clients = [await stack.enter_async_context(raw_client(node)) for _ in range(20)]
        metrics = await scrape(node)
        assert metrics["wsfleet_websockets"] == 81
        assert metrics["wsfleet_connection_limit"] == 0
        assert metrics["wsfleet_ready"] == 1
        assert not node.node.stats.handshakes_refused
        assert not node.node.stats.limit_hits
        await watcher.publish()
        await asyncio.sleep(1.5)  # no lifetime: nothing closes them meanwhile
        for n, ws in enumerate(clients):
            await ping(ws, n + 2)
        await watcher.check()
        assert node.node.stats.disconnects[3011] == 0


# -- client.max_connection_lifetime ---------------------------------------------------------

LIFETIME = 1.0
JITTER = 0.5


async def test_a_connection_is_closed_with_3011_when_its_lifetime_is_over() -> None:
    overrides = {
        "dev": True,
        "client.max_connection_lifetime": LIFETIME,
        "client.connection_lifetime_jitter": JITTER,
    }

    async def one() -> float:
        started = time.monotonic()
        async with raw_client(node) as ws:
            code, _ = await closed_with(ws)
            assert (code, ws.close_reason) == (3011, "connection lifetime")
        return time.monotonic() - started

    async with running_node(overrides) as node:
        lived = await asyncio.gather(*(one() for _ in range(5)))
        # Shortened by the jitter at most: never closed before lifetime * (1 - jitter).
        assert min(lived) >= LIFETIME * (1 - JITTER)
        assert node.node.stats.disconnects[3011] == 5
        assert (await scrape(node))[HITS.format("connection_lifetime")] == 5


async def test_the_sdk_reconnects_after_its_lifetime_and_recovers_what_it_missed() -> None:
    overrides = {
        "dev": True,
        "client.max_connection_lifetime": LIFETIME,
        "client.connection_lifetime_jitter": JITTER,
    }
    config = {"channel": {"namespaces": [{"name": "feed", "history_size": 50, "history_ttl": 300}]}}
    channel = "feed:lifetime"
    events = ClientEvents()
    async with (
        running_node(overrides, config=config) as node,
        sdk_client(node, events=events) as client,
        api_client(node) as api,
    ):
        _, sub = await subscribed(client, channel, recoverable=True)
        assert (await sub.next("subscribed")).recoverable
        await api.publish(cent.PublishRequest(channel=channel, data={"n": 1}))
        assert [p.offset for p in await sub.take("pub", 1)] == [1]

        closed = await events.next("connecting")  # the SDK reconnects by itself
        assert (closed.code, closed.reason) == (3011, "connection lifetime")
        assert (await sub.next("subscribing")).code
        for n in range(2, 6):
            await api.publish(cent.PublishRequest(channel=channel, data={"n": n}))
        again = await sub.next("subscribed")
        assert again.was_recovering and again.recovered
        got = await sub.take("pub", 4)
        assert [(value(p.data)["n"], p.offset) for p in got] == [(n, n) for n in range(2, 6)]
        await events.events.take("connected", 2)  # the first connection, then the new one
        assert client.state.value == "connected"
        assert node.node.stats.limit_hits["connection_lifetime"] >= 1
        assert (await scrape(node))[HITS.format("connection_lifetime")] >= 1
