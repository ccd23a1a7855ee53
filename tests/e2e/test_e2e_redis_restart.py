"""Redis killed and restarted empty under traffic: no client has a gap it was not told of.

What this proves, with three nodes behind nginx, 300 SDK clients subscribed
with recovery and a publisher at 20/s: Redis is SIGKILLed mid-traffic (every
node goes unready, publications fail and are retried by the publisher with
their idempotency keys) and started again on the same port without its data
(every node comes back ready by itself, the stream has a new epoch). Then,
judged as the Redis outage test of ``tests/fleet`` judges it, every client
either received every acknowledged publication after it subscribed, in
order, or was told of each hole: a resubscribe with ``recovered: false`` and
the new position, past which it received everything. None is left
disconnected, and the report counts no lost publication (a hole without such
a resubscribe) and no anomaly (a "recovered" resubscribe into another epoch,
a resubscribe that did not ask to recover).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import play


@pytest.mark.timeout(240)
async def test_redis_restart_leaves_no_unknown_gap(lab_out: Path) -> None:
    report, _ = await play("redis-restart", lab_out)
    seen = report["results"]["redis"]
    assert seen == {"went_unready": True, "came_back": True}

    t = report["totals"]
    assert t["lost"] == 0, report["worst_clients"]
    assert t["problems"] == 0, report["worst_clients"]
    assert t["out_of_order"] == 0, report["worst_clients"]
    assert t["left_disconnected"] == 0, report["worst_clients"]
    assert t["publish_gave_up"] == 0
    assert t["publish_retried"] > 0, "publishing failed during the outage and was retried"
    # Redis lost the stream: it has a new epoch, and every client was told.
    assert t["epochs"] == 2
    assert t["unrecovered_resubscribes"] >= t["clients"]
