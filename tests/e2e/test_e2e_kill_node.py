"""A node SIGKILLed behind nginx: its clients recover elsewhere, its presence goes in time.

What this proves, with three nodes behind nginx, 300 SDK clients (30 of them
also in a presence channel, ``room:lab``) and a steady publisher: the node
holding the most clients is SIGKILLed (no close frame, no goodbye, no leave
events) and its endpoint leaves nginx. Then

* its clients reconnect through nginx to the two others and recover: nothing
  is lost, duplicated or reordered, nobody is left disconnected;
* presence, read through a surviving node's server API, stops listing the
  dead node's connections within the documented bound, two
  ``fleet.heartbeat_interval`` (here 2 s), counted from the kill (which is at
  or after the node's last heartbeat, so this is the stricter reading); and it
  lists every presence client's new connection instead.

Which presence entries were the dead node's is read from the clients' own
records afterwards: the connections whose client had to connect again after
the kill.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.scenarios import dead_presence
from tests.e2e.conftest import play


@pytest.mark.timeout(240)
async def test_a_killed_node_loses_nothing_and_its_presence_goes(lab_out: Path) -> None:
    report, options = await play("kill-node", lab_out)
    assert options.setting("fleet.heartbeat_interval") == 1.0
    killed = [m for m in report["marks"] if m.get("action") == "sigkill"]
    assert len(killed) == 1 and killed[0]["clients"] > 0

    t = report["totals"]
    assert (t["lost"], t["duplicates"], t["out_of_order"]) == (0, 0, 0), report["worst_clients"]
    assert t["left_disconnected"] == 0, report["worst_clients"]
    assert t["reconnects"] >= killed[0]["clients"]

    results = report["results"]
    bound = results["presence_bound_s"]
    assert bound == 2.0
    dead, last_seen = dead_presence(report, results)
    assert dead, "some presence clients were on the killed node"
    assert last_seen <= bound, f"the dead node's presence was still listed {last_seen:.2f} s after"
    final = set(results["presence"][-1]["clients"])
    assert not dead & final
    assert len(final) == options.presence_clients, "every presence client is back, once"
