"""A node at its connection cap refuses with 503, and nginx sends the client elsewhere.

What this proves, with three nodes behind a real nginx, the first with
``server.connection_limit`` at 50 (half its round-robin share of 300
clients): the capped node refuses handshakes beyond 50 with HTTP 503 before
the upgrade (its ``wsfleet_handshakes_refused{reason="connection_limit"}``
counts them) and never holds more than 50; nginx, configured with
``proxy_next_upstream error timeout http_503``, tries the next node for each
refused handshake (its access log shows an upstream status "503, 101"), so
every one of the 300 SDK clients subscribes, none is left disconnected, and
nothing is lost while the publisher publishes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import CLIENTS, play

CAP = 50


@pytest.mark.timeout(240)
async def test_clients_beyond_a_nodes_cap_land_on_other_nodes(lab_out: Path) -> None:
    report, options = await play(
        "node-cap", lab_out, node_settings={0: {"server": {"connection_limit": CAP}}}
    )
    cap = report["results"]["cap"]
    assert cap["node"] == "node-0" and cap["cap"] == CAP
    assert cap["refused"] > 0, "the capped node refused handshakes"
    assert cap["clients"] <= CAP

    t = report["totals"]
    assert t["clients"] == CLIENTS
    assert t["left_disconnected"] == 0, report["worst_clients"]
    assert (t["lost"], t["duplicates"], t["out_of_order"]) == (0, 0, 0), report["worst_clients"]

    # nginx retried each refused handshake on another node, in the same request.
    log = (lab_out / "logs" / "nginx" / "access.log").read_text()
    retried = re.findall(r'upstream_status="503, 101"', log)
    assert len(retried) >= cap["refused"], f"{len(retried)} retried handshakes in the log"
    assert options.node_settings[0]["server"]["connection_limit"] == CAP
