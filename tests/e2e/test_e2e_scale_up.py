"""After a scale-up from 2 to 4 nodes, rebalancing spreads the existing connections.

What this proves, behind a real nginx (round robin) with 300 SDK clients on
two nodes and a steady publisher: two new nodes join (the balancer is
reloaded with four), the old nodes, each holding about twice the new mean,
shed connections with 3011 (reconnect) at ``rebalance.rate`` until they are
within ``rebalance.tolerance`` of the mean; the clients reconnect through
nginx, land anywhere, and recover. Once it settles, every node holds within
±20% of the mean, and nothing was lost, duplicated or reordered.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.scenarios import BALANCE_TOLERANCE, spread
from tests.e2e.conftest import CLIENTS, play

REBALANCE = {
    "rebalance": {"mode": "on", "interval": 1.0, "rate": 50, "tolerance": 0.1},
    "fleet": {"heartbeat_interval": 0.5},
}


@pytest.mark.timeout(240)
async def test_scale_up_from_two_to_four_nodes_rebalances(lab_out: Path) -> None:
    report, _ = await play("scale-up", lab_out, settings=REBALANCE, nodes=2)
    counts = report["results"]["balance"]
    assert len(counts) == 4 and sum(counts.values()) == CLIENTS, counts
    mean = CLIENTS / 4
    assert spread(counts) <= BALANCE_TOLERANCE, (
        f"every node within ±{BALANCE_TOLERANCE:.0%} of {mean}: {counts}"
    )
    added = [m["node"] for m in report["marks"] if m.get("action") == "add"]
    assert all(counts[name] > 0 for name in added), "the new nodes got connections"
    assert int(report["reconnect_codes"].get("3011", 0)) > 0, "the old nodes shed with 3011"

    t = report["totals"]
    assert (t["lost"], t["duplicates"], t["out_of_order"]) == (0, 0, 0), report["worst_clients"]
    assert t["left_disconnected"] == 0, report["worst_clients"]
    assert t["unrecovered_resubscribes"] == 0
