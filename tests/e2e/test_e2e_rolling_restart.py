"""A rolling restart of every node behind nginx loses nothing and paces its reconnects.

What this proves, with three ``wsfleet serve`` processes behind a real nginx,
300 ``centrifuge-python`` clients subscribed with recovery and a publisher at
20 publications per second: each node in turn gets SIGTERM, drains
(``drain.window`` 3 s) and exits 0, and a new node replaces it; afterwards

* every client received every publication made after it subscribed, exactly
  once and in order, and none is left disconnected;
* every resubscribe after a reconnect recovered (the clients moved between
  nodes and resumed from history);
* the reconnects per second never exceeded what the drain's pace allows:
  a node with n clients closes them over the window, n / window per second,
  with the slack stated in :data:`lab.scenarios.JITTER_SLACK` for the SDK's
  reconnect jitter. Rebalancing is off here so that the drain alone is
  measured.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.scenarios import drain_paces
from tests.e2e.conftest import assert_delivered, play


@pytest.mark.timeout(240)
async def test_rolling_restart_of_every_node_loses_nothing(lab_out: Path) -> None:
    report, options = await play(
        "rolling-restart", lab_out, settings={"rebalance": {"mode": "off"}}, nodes=3
    )
    assert_delivered(report)
    t = report["totals"]

    exits = [m["code"] for m in report["marks"] if m.get("action") == "exit"]
    assert exits == [0, 0, 0], "every drained node exits 0"
    drained = [m["clients"] for m in report["marks"] if m.get("action") == "sigterm"]
    assert all(n > 0 for n in drained), f"each node held clients when drained: {drained}"

    # The clients moved: each drain closed its clients with 3001, and they recovered.
    assert int(report["reconnect_codes"].get("3001", 0)) >= sum(drained)
    assert t["recovered_resubscribes"] >= sum(drained)
    assert t["unrecovered_resubscribes"] == 0

    # While a node with n clients drains: at most n / window per second, with the slack.
    assert options.setting("drain.window") == 3.0
    paces = drain_paces(report, options)
    assert len(paces) == 3
    assert all(p.ok for p in paces), (paces, report["reconnects_per_second"])
