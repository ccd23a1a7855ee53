"""What an idle connection keeps: only what it uses.

A node holds many thousands of idle connections, so each byte one keeps is
megabytes on a pod (docs/topics/performance.md, "Memory per connection").
These are the structural reasons an idle connection costs about 8 KB rather
than 14 KB; a change that brings one back fails here instead of in a
capacity plan.
"""

from __future__ import annotations

import json

from tests.integration.raw import json_replies, raw_client
from tests.node_harness import RunningNode


async def test_an_idle_subscriber_keeps_no_headers_queue_or_loop_timers(
    dev_node: RunningNode,
) -> None:
    async with raw_client(dev_node, headers={"Cookie": "session=" + "x" * 2000}) as ws:
        await ws.send(json.dumps({"id": 2, "subscribe": {"channel": "idle"}}))
        (reply,) = await json_replies(ws)
        assert reply["id"] == 2 and "subscribe" in reply
        (conn,) = dev_node.node._ws.connections  # type: ignore[union-attr]
        transport = conn.transport
        assert transport is not None
        # The upgrade's headers (here a 2 KB cookie) are not kept past the upgrade.
        assert not transport.request.headers and not transport.response.headers
        session = conn.session
        assert session is not None
        assert not hasattr(session, "__dict__")
        assert session._pending is None  # no command queue between commands
        assert session._worker is None  # no task between commands
        assert session._timers is None  # ping, pong, presence: shared queues, not loop timers
        assert session._ping_timer is not None and session._presence_timer is not None
        assert session._connect_timer is None
        proto = transport.underlying_transport.get_protocol()
        assert not hasattr(proto, "__dict__")
