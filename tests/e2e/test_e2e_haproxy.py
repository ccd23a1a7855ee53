"""A rolling restart behind a health-checking HAProxy: /readyz takes each draining node out.

What this proves, with three ``wsfleet serve`` processes behind a real HAProxy
(``option httpchk GET /readyz`` on each node's internal port, ``inter 500ms
fall 2``, cookie stickiness, ``retry-on ... 503`` with ``option redispatch 1``),
300 ``centrifuge-python`` clients subscribed with recovery and a publisher at
20 publications per second: each node in turn gets SIGTERM, drains
(``drain.readiness_delay`` 0.5 s, ``drain.window`` 3 s) and exits, and a new
node replaces it. The draining node stays in HAProxy's configuration until it
has exited (``keep_draining_backends``), as with a balancer whose server list
does not follow the pods' endpoints, so that only HAProxy's own health check
can take it out of the rotation (by default the lab removes a node from the
balancer at its SIGTERM, and the check would never get the chance).
Afterwards:

* every client received every publication made after it subscribed, exactly
  once and in order; none is left disconnected; every resubscribe after a
  reconnect recovered from history; every drained node exited 0;
* HAProxy marked each draining node DOWN because of its ``/readyz``: HAProxy's
  statistics (``/lab/stats``, sampled every 0.2 s with the draining node's
  ``/metrics``) show it ``DOWN`` with the last check ``L7STS`` (a wrong HTTP
  status), code 503, while the node still ran (between its SIGTERM and its
  exit); HAProxy's log says ``Server wsfleet/<node> is DOWN, reason: Layer7
  wrong status, code: 503``;
* once DOWN, the node was sent no connection: HAProxy's count of the
  connections it sent the node (``stot``, refused ones included) stays the
  same from the first ``DOWN`` sample to the exit;
* every handshake the node refused as draining
  (``wsfleet_handshakes_refused_total{reason="draining"}``, its last value
  before the node's internal port closed) HAProxy retried on another node:
  the refusals equal the node's redispatches in HAProxy's statistics
  (``wredis``), so no client saw a refusal.

Why these rather than a bound on the refusals: a few refusals are expected
and their number is a matter of timing. ``/readyz`` fails at the SIGTERM, but
HAProxy takes the node out only at the second failed check (up to 1 s later),
while the node starts refusing, and closing its clients, who come back through
HAProxy, after 0.5 s; the handshakes HAProxy sends it in between are refused
(a handful out of a hundred or more clients). So the test checks what holds
whatever the timing: the check, not a reload, took the node out; the gap
closed for good at ``DOWN``; and the refusals in the gap were all retried.
The one ordering relied on follows from the settings with seconds to spare:
a drain (0.5 s + 3 s at the least) outlasts HAProxy's detection (two checks,
1 s at most) and a few sampling intervals. Rebalancing is off so that only
the drains move clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path
from typing import Any

import pytest

from lab.environment import Lab
from lab.haproxy import HAProxy
from lab.scenarios import SCENARIOS, Scenario, handshakes_refused, rolling_restart
from tests.e2e.conftest import assert_delivered, play

WATCH_INTERVAL = 0.2
"""Seconds between two samples of HAProxy's statistics and the draining nodes' metrics."""


async def sample(lab: Lab) -> dict[str, Any]:
    """HAProxy's view of every node now, and the draining nodes' refusals so far."""
    balancer = lab.balancer
    assert isinstance(balancer, HAProxy)
    t = time.time()
    servers = await balancer.servers()
    draining = [n for n in lab.leaving if n.running]
    metrics = await asyncio.gather(*(n.probe("/metrics", 1.0) for n in draining))
    return {
        "t": t,
        "servers": {name: state._asdict() for name, state in servers.items()},
        "refused": {
            node.name: handshakes_refused(body, "draining")
            for node, (code, body) in zip(draining, metrics, strict=True)
            if code == 200
        },
    }


async def watched_rolling_restart(lab: Lab) -> None:
    """The rolling restart, with HAProxy and the draining nodes sampled throughout."""
    samples: list[dict[str, Any]] = []
    lab.results["haproxy"] = samples
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            samples.append(await sample(lab))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_INTERVAL)

    watcher = asyncio.create_task(watch())
    try:
        await rolling_restart(lab)
    finally:
        stop.set()
        await watcher


def drain_seen(samples: list[dict[str, Any]], node: str, start: float, end: float) -> str:
    """What HAProxy and ``node`` showed between ``start`` (SIGTERM) and ``end`` (exit).

    '' if HAProxy marked the node DOWN for a 503 from /readyz, sent it nothing
    afterwards, and retried elsewhere every handshake the node refused; else
    what it showed instead.
    """
    during = [s for s in samples if start < s["t"] < end and node in s["servers"]]
    states = [s["servers"][node] for s in during]
    refused = max((s["refused"].get(node, 0) for s in during), default=0)
    fields = ("status", "check_status", "check_code", "sessions", "redispatches")
    seen = [tuple(st[f] for f in fields) for st in states]
    shown = f"refused {refused}; HAProxy's {fields}: {seen}"
    down = next((i for i, st in enumerate(states) if st["status"] == "DOWN"), None)
    if down is None:
        return f"never DOWN while it drained: {shown}"
    first = states[down]
    if (first["check_status"], first["check_code"]) != ("L7STS", 503):
        return f"DOWN, but not for a 503 from /readyz: {shown}"
    if any(st["sessions"] != first["sessions"] for st in states[down:]):
        return f"sent connections after it was DOWN: {shown}"
    if refused != states[-1]["redispatches"]:
        return f"refusals not all retried on another node: {shown}"
    return ""


@pytest.mark.timeout(240)
async def test_rolling_restart_behind_haproxy_health_checks(lab_out: Path) -> None:
    rolling = SCENARIOS["rolling-restart"]
    report, options = await play(
        "rolling-restart",
        lab_out,
        settings={"rebalance": {"mode": "off"}},
        scenario=Scenario(rolling.name, watched_rolling_restart, rolling.checks),
        nodes=3,
        balancer="haproxy",
        affinity=True,
        keep_draining_backends=True,
    )
    assert report["meta"]["balancer"] == "haproxy (affinity cookie)"
    assert_delivered(report)
    t = report["totals"]

    sigterms = [m for m in report["marks"] if m.get("action") == "sigterm"]
    exits = {m["node"]: m for m in report["marks"] if m.get("action") == "exit"}
    assert [exits[m["node"]]["code"] for m in sigterms] == [0, 0, 0], "every drained node exits 0"
    drained = [m["clients"] for m in sigterms]
    assert all(n > 0 for n in drained), f"each node held clients when drained: {drained}"
    assert t["recovered_resubscribes"] >= sum(drained)
    assert t["unrecovered_resubscribes"] == 0

    # HAProxy's health check, not a reload, took each draining node out, and for good.
    assert options.keep_draining_backends
    t0 = report["meta"]["started_at"]  # the marks' times are from here
    samples = report["results"]["haproxy"]
    problems = []
    for m in sigterms:
        why = drain_seen(samples, m["node"], t0 + m["t"], t0 + exits[m["node"]]["t"])
        problems += [f"{m['node']}: {why}"] if why else []
    assert not problems, "\n".join(problems)
    log = (lab_out / "logs" / "haproxy" / "haproxy.out").read_text()
    down = re.findall(r"Server wsfleet/(\S+) is DOWN, reason: Layer7 wrong status, code: 503", log)
    assert set(down) >= {m["node"] for m in sigterms}, f"DOWN for a 503 in the log: {set(down)}"
