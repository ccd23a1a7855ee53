"""The drain of one node: announce, refuse, close in paced batches, finish.

A real node in the test's loop, real WebSocket clients. What is checked is
what a rollout depends on: /readyz fails at once while /livez does not; the
node keeps taking handshakes for drain.readiness_delay (the ingress may
still send some); after that it refuses them with 503 and Retry-After;
connections close with 3001 (reconnect), spread over drain.window rather
than all at once; /status and /metrics show the progress; a second signal
(``hurry``) closes the rest at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from tests.integration.clients import http_get
from tests.integration.raw import closed_at, connected
from tests.node_harness import RunningNode, running_node
from wsfleet.core.drain import DrainStep

CLIENTS = 30


@contextlib.asynccontextmanager
async def clients(node: RunningNode, n: int) -> AsyncIterator[list[ClientConnection]]:
    sockets = [await connected(node) for _ in range(n)]
    try:
        yield sockets
    finally:
        for ws in sockets:
            await ws.close()


async def wait_for_step(node: RunningNode, step: DrainStep) -> None:
    while node.node.drainer.progress.step is not step:
        await asyncio.sleep(0.01)


async def test_drain_announces_then_refuses_then_closes_in_paced_batches() -> None:
    delay, window = 0.8, 2.0
    overrides = {"dev": True, "drain.readiness_delay": delay, "drain.window": window}
    async with running_node(overrides) as node, clients(node, CLIENTS) as sockets:
        watchers = [asyncio.create_task(closed_at(ws)) for ws in sockets]
        drain = asyncio.create_task(node.node.drain())
        await wait_for_step(node, DrainStep.ANNOUNCING)

        assert await http_get(node, "/livez") == (200, "ok\n")
        status, body = await http_get(node, "/readyz")
        assert status == 503 and "draining" in body
        late = await connected(node)  # still welcome during the readiness delay
        watchers.append(asyncio.create_task(closed_at(late)))

        await wait_for_step(node, DrainStep.CLOSING)
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(node.ws_url, proxy=None)
        assert refused.value.response.status_code == 503
        assert int(refused.value.response.headers["Retry-After"]) >= 1

        status, body = await http_get(node, "/status")
        progress = json.loads(body)["drain"]
        assert progress["step"] == "closing"
        assert progress["total"] == CLIENTS + 1
        _, metrics = await http_get(node, "/metrics")
        assert "wsfleet_draining 1.0" in metrics

        closes = await asyncio.gather(*watchers)
        await drain

    assert {(code, reason) for _, code, reason in closes} == {(3001, "shutdown")}
    times = sorted(t for t, _, _ in closes)
    # Paced, not all at once: the closes span a good part of the window and
    # come in many separate batches (a slow machine only spreads them more).
    assert times[-1] - times[0] >= window * 0.5
    assert len({round(t, 2) for t in times}) >= 5
    assert node.node.stats.handshakes_refused["draining"] >= 1
    assert node.node.drainer.progress.closed == CLIENTS + 1
    assert node.node.drainer.progress.step is DrainStep.DONE


async def test_a_second_signal_closes_the_rest_at_once() -> None:
    overrides = {"dev": True, "drain.readiness_delay": 60, "drain.window": 60, "drain.timeout": 200}
    async with running_node(overrides) as node, clients(node, 10) as sockets:
        watchers = [asyncio.create_task(closed_at(ws)) for ws in sockets]
        drain = asyncio.create_task(node.node.drain())
        await wait_for_step(node, DrainStep.ANNOUNCING)
        node.node.hurry()
        await asyncio.wait_for(drain, 30)  # far below the minute-long delay and window
        closes = await asyncio.gather(*watchers)
    assert {code for _, code, _ in closes} == {3001}
    assert node.node.drainer.progress.hurried


async def test_stop_closes_everything_without_waiting() -> None:
    overrides = {"dev": True, "drain.readiness_delay": 60, "drain.window": 60, "drain.timeout": 200}
    async with running_node(overrides) as node, clients(node, 5) as sockets:
        watchers = [asyncio.create_task(closed_at(ws)) for ws in sockets]
        await asyncio.wait_for(node.node.stop(), 30)
        closes = await asyncio.gather(*watchers)
    assert {code for _, code, _ in closes} == {3001}
    assert not node.node.drainer.progress.hurried  # a stop is not a cut-short drain
