"""Fixtures of the fleet tests: a private Redis and three ``wsfleet serve`` processes on it.

The fleet and its Redis live for a whole test module (tests use channels of
their own, so they do not see each other's publications). A test that kills
Redis or a node for good builds its own with :func:`tests.fleet.processes.fleet`.
When a test fails, the end of every node's log is added to its report.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any, Protocol

import pytest
from centrifuge import Client, ClientEventHandler

from tests.fleet.processes import Fleet, running_fleet
from tests.redis_servers import RedisServer, redis_server
from wsfleet.auth import mint_connection_token

SECRET = "fleet-tests-hmac-secret-of-more-than-32-bytes"
API_KEY = "fleet-tests-api-key"

CONFIG: dict[str, Any] = {
    # A short drain: these tests are about delivery, not about the drain's pace.
    "drain": {"readiness_delay": 0.2, "window": 0.5, "timeout": 10},
    "api": {"key": API_KEY},
    "auth": {"token_hmac_secret": SECRET},
    "channel": {
        "namespaces": [
            {
                "name": "feed",
                "history_size": 500,
                "history_ttl": 300,
                "allow_subscribe_for_client": True,
            },
            {
                "name": "room",
                "presence": True,
                "join_leave": True,
                "allow_subscribe_for_client": True,
                "allow_presence_for_subscriber": True,
            },
        ]
    },
}


def token(user: str) -> str:
    """A connection token for ``user``, valid on every node of the fleet."""
    return mint_connection_token(SECRET, user=user)


class Address(Protocol):
    @property
    def ws_url(self) -> str: ...


def sdk(
    target: Address,
    user: str,
    *,
    protobuf: bool = False,
    events: ClientEventHandler | None = None,
) -> Client:
    """An SDK client of ``target`` (a node, or the balancer) for ``user``, not connected yet.

    It reconnects fast, so tests never wait for the SDK's backoff.
    """
    return Client(
        target.ws_url,
        events=events,
        token=token(user),
        use_protobuf=protobuf,
        proxy=None,
        min_reconnect_delay=0.05,
        max_reconnect_delay=0.5,
    )


@pytest.fixture(scope="module")
def fleet_redis() -> Iterator[RedisServer]:
    """A private ``redis-server`` for the module's fleet (never the shared one)."""
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def fleet3(fleet_redis: RedisServer) -> Iterator[Fleet]:
    """Three ready nodes, ``node-0`` .. ``node-2``, on :func:`fleet_redis`, with :data:`CONFIG`."""
    with running_fleet(3, fleet_redis.url, config=CONFIG) as group:
        yield group


@pytest.fixture(autouse=True)
async def _sdk_sockets_closed() -> AsyncIterator[None]:
    """Let the SDK finish closing its WebSockets before the test's event loop closes.

    ``Client.disconnect()`` returns before the WebSocket is closed: the SDK
    closes it in a task of its own. With the nodes in other processes nothing
    else keeps the loop busy meanwhile, so without this wait the loop could
    close first and leave the socket open (a ResourceWarning, an error here).
    """
    yield
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    if others:
        await asyncio.wait(others, timeout=5)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and call.when in ("setup", "call"):
        funcargs: dict[str, Any] = getattr(item, "funcargs", {})
        for value in funcargs.values():
            if isinstance(value, Fleet):
                for node in value:
                    report.sections.append((f"{node.name} log", node.log_tail()))
    return report
