"""The named scenarios of the lab, and the run that plays one and reports it.

A scenario is what happens to the fleet while the clients listen and the
publisher publishes: its :attr:`Scenario.play` acts on a running
:class:`~lab.environment.Lab`; :attr:`Scenario.checks` then judge what the
scenario promises beyond zero loss (a reconnect rate, a balance, presence
cleared in time, refusals at a cap), from the report and the lab's results.

* ``rolling-restart``: every node in turn gets SIGTERM, drains, exits 0, and
  a new node (new process, name, ports) replaces it, as a Deployment's
  rolling update does (one pod at a time, the old one gone before the new one
  comes: ``maxSurge: 0``). Check: reconnects per second stay under what the
  drain settings allow.
* ``scale-up``: the fleet doubles (2 -> 4 by default) and rebalancing spreads
  the existing connections. Check: every node ends within ±20% of the mean.
* ``kill-node``: one node is SIGKILLed. Check: its clients' presence entries
  disappear within 2 x ``fleet.heartbeat_interval``.
* ``redis-restart``: Redis is SIGKILLed and restarted empty on the same port.
  Check: nodes go unready and come back; clients know of every gap.
* ``node-cap``: node-0 has ``server.connection_limit`` at half its share.
  Check: it refused handshakes (503) and holds no more than its cap (the
  refused clients landed on other nodes: nobody is left out); and then the
  fleet settles: no client is moved during the last seconds of the run.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.environment import PRESENCE_CHANNEL, Lab, LabOptions
from lab.nodes import merge
from lab.report import analyze, plot, render_markdown, render_text

__all__ = ["SCENARIOS", "Scenario", "options_for", "run_scenario"]

Check = dict[str, Any]

JITTER_SLACK = 1.5
"""Slack on the drain's reconnect-rate bound, for the SDK's reconnect jitter and batching.

A client closed at time c reconnects at c + d, d drawn by the SDK between its
min_reconnect_delay and twice that (full jitter), so the reconnects of one
second come from the closes of a span of 1 + 2 x min_reconnect_delay seconds;
and the node closes in batches, so a span may hold one batch more than its
share. Factor 1.5 covers both.
"""

BALANCE_TOLERANCE = 0.2
"""scale-up: every node within ±20% of the mean once rebalancing is done."""


@dataclass(frozen=True)
class Scenario:
    name: str
    play: Callable[[Lab], Awaitable[None]]
    checks: Callable[[Mapping[str, Any], Lab], list[Check]] = lambda report, lab: []
    nodes: int = 3
    settings: Mapping[str, Any] = field(default_factory=dict)
    presence_clients: int = 0
    node_settings: Callable[[LabOptions], dict[int, dict[str, Any]]] = lambda options: {}


# -- rolling restart ----------------------------------------------------------------------


async def rolling_restart(lab: Lab) -> None:
    for node in list(lab.fleet.nodes):
        code = await lab.drain_node(node)
        if code != 0:
            raise RuntimeError(f"{node.name} exited with code {code}, not 0\n{node.log_tail()}")
        await lab.add_node()
    if str(lab.options.setting("rebalance.mode", "auto")) != "off":
        await wait_balanced(lab)  # the last new node is empty until rebalancing fills it


@dataclass(frozen=True)
class DrainPace:
    """One drain of a rolling restart: the bound on its reconnects, and what was seen."""

    node: str
    clients: int
    bound: int
    """Most reconnects any one second of the drain may see."""
    worst: int
    """Most reconnects seen in one second of the drain."""

    @property
    def ok(self) -> bool:
        return self.worst <= self.bound


def drain_bound(clients: int, options: LabOptions) -> int:
    """Most reconnects one second may see while a node with ``clients`` drains.

    The node closes them over ``drain.window`` seconds: clients / window per
    second (all at once for a window of 0), with the slack of
    :data:`JITTER_SLACK`. A fleet that also rebalances may shed up to
    ``rebalance.rate`` per node per second on top.
    """
    window = float(options.setting("drain.window", 15.0))
    per_second = clients / window if window > 0 else float(clients)
    spread = 1 + 2 * options.min_reconnect_delay
    bound = math.ceil(per_second * spread * JITTER_SLACK)
    if str(options.setting("rebalance.mode", "auto")) != "off":
        bound += math.ceil(float(options.setting("rebalance.rate", 10.0)) * options.nodes)
    return bound


def drain_paces(report: Mapping[str, Any], options: LabOptions) -> list[DrainPace]:
    """Each drain's bound and the most reconnects seen in one second while it ran.

    A drain's seconds run from its SIGTERM to one second after the node's exit
    (the last clients it closed reconnect within the SDK's first delay).
    """
    series = report["reconnects_per_second"]
    exits = {m["node"]: m["t"] for m in report["marks"] if m.get("action") == "exit"}
    paces = []
    for mark in report["marks"]:
        if mark.get("action") != "sigterm":
            continue
        first = int(mark["t"])
        last = int(exits.get(mark["node"], len(series))) + 1
        worst = max(series[first : last + 1], default=0)
        n = int(mark["clients"])
        paces.append(DrainPace(mark["node"], n, drain_bound(n, options), worst))
    return paces


def rolling_restart_checks(report: Mapping[str, Any], lab: Lab) -> list[Check]:
    paces = drain_paces(report, lab.options)
    exits = [m["code"] for m in report["marks"] if m.get("action") == "exit"]
    window = lab.options.setting("drain.window")
    return [
        {
            "name": "each drain's reconnects within its pace",
            "ok": bool(paces) and all(p.ok for p in paces),
            "detail": "; ".join(
                f"{p.node}: {p.clients} clients over {window} s, at most {p.worst}/s "
                f"(bound {p.bound}/s)"
                for p in paces
            ),
        },
        {
            "name": "every drained node exited 0",
            "ok": all(code == 0 for code in exits),
            "detail": f"exit codes {exits}",
        },
    ]


# -- scale-up -----------------------------------------------------------------------------


def spread(counts: Mapping[str, int]) -> float:
    """The largest relative distance of a node's count from the mean (0 when equal)."""
    if not counts:
        return 0.0
    mean = sum(counts.values()) / len(counts)
    if mean == 0:
        return 0.0
    return max(abs(c - mean) / mean for c in counts.values())


async def scale_up(lab: Lab) -> None:
    for _ in range(lab.options.nodes):
        await lab.add_node()
    await wait_balanced(lab)


async def wait_balanced(lab: Lab, timeout: float = 60.0) -> None:
    """Until every node is within :data:`BALANCE_TOLERANCE` of the mean (or ``timeout``)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        counts = await current_counts(lab)
        if sum(counts.values()) == lab.options.clients and spread(counts) <= BALANCE_TOLERANCE:
            lab.mark(f"balanced: {counts}", short="balanced", action="balanced", counts=counts)
            break
        await asyncio.sleep(0.5)
    else:
        lab.mark(f"not balanced after {timeout} s", short="unbalanced", action="unbalanced")
    lab.results["balance"] = await current_counts(lab)


async def current_counts(lab: Lab) -> dict[str, int]:
    """Every member node's connection count now (from its ``/status``)."""
    out = {}
    for node in lab.fleet.nodes:
        code, body = await node.probe("/status", 1.0)
        out[node.name] = int(json.loads(body)["num_clients"]) if code == 200 else 0
    return out


def scale_up_checks(report: Mapping[str, Any], lab: Lab) -> list[Check]:
    counts = lab.results.get("balance", {})
    return [
        {
            "name": f"every node within ±{BALANCE_TOLERANCE:.0%} of the mean",
            "ok": bool(counts) and spread(counts) <= BALANCE_TOLERANCE,
            "detail": f"{counts}, largest distance from the mean {spread(counts):.0%}",
        }
    ]


# -- kill a node --------------------------------------------------------------------------


async def kill_node(lab: Lab) -> None:
    victim = max(lab.fleet.nodes, key=lambda n: lab.observer.clients_now().get(n.name, 0))
    heartbeat = float(lab.options.setting("fleet.heartbeat_interval", 3.0))
    survivor = next(n for n in lab.fleet.nodes if n is not victim)
    samples: list[dict[str, Any]] = []
    lab.results["presence"] = samples
    lab.results["presence_bound_s"] = 2 * heartbeat
    samples.append(await presence_sample(lab, survivor.internal_url))
    await lab.kill_node(victim)
    lab.results["killed_at"] = lab.marks[-1]["t"]
    until = time.monotonic() + 2 * heartbeat + 1.0
    while time.monotonic() < until:
        samples.append(await presence_sample(lab, survivor.internal_url))
        await asyncio.sleep(0.2)
    # Then until every presence client is listed once more (they resubscribe on their own).
    until = time.monotonic() + 15.0
    while len(samples[-1]["clients"]) != lab.options.presence_clients:
        if time.monotonic() > until:
            break
        await asyncio.sleep(0.2)
        samples.append(await presence_sample(lab, survivor.internal_url))


async def presence_sample(lab: Lab, internal_url: str) -> dict[str, Any]:
    """The presence channel's client ids, as one node's server API answers now."""
    t = time.time()
    result = await lab.api.call(internal_url, "presence", {"channel": PRESENCE_CHANNEL})
    return {"t": t, "clients": sorted(result.get("presence", {}))}


def dead_presence(report: Mapping[str, Any], results: Mapping[str, Any]) -> tuple[set[str], float]:
    """The presence ids of connections the kill ended, and when the last was seen after it.

    A connection ended by the kill is the one a client held at the kill and
    then lost without a close code from a server (below 3000: the SDK saw the
    transport go, as it does when a process dies), not one closed by a live
    node (rebalancing, 3011). The second value is the time (seconds after the
    kill) of the last sample still listing one of them, 0 if none did.
    """
    samples = results.get("presence", [])
    killed_at = float(results.get("killed_at", 0))
    if not samples:
        return set(), 0.0
    before = set(samples[0]["clients"])
    dead = set()
    for index, ids in report["client_ids"].items():
        held = [cid for t, cid in ids if t < killed_at]
        losses = [code for t, code in report["client_losses"].get(index, []) if t > killed_at]
        if held and held[-1] in before and losses and losses[0] < 3000:
            dead.add(held[-1])
    last_seen = 0.0
    for sample in samples[1:]:
        if dead & set(sample["clients"]):
            last_seen = sample["t"] - killed_at
    return dead, last_seen


def kill_node_checks(report: Mapping[str, Any], lab: Lab) -> list[Check]:
    dead, last_seen = dead_presence(report, lab.results)
    bound = float(lab.results.get("presence_bound_s", 0))
    samples = lab.results.get("presence", [])
    cleared = bool(samples) and not (dead & set(samples[-1]["clients"]))
    return [
        {
            "name": "the dead node's presence gone within 2 x heartbeat",
            "ok": bool(dead) and cleared and last_seen <= bound,
            "detail": f"{len(dead)} entries of the dead node, last seen {last_seen:.2f} s "
            f"after the kill, bound {bound} s",
        }
    ]


# -- Redis restart ------------------------------------------------------------------------


async def redis_restart(lab: Lab) -> None:
    await lab.kill_redis()
    unready = await lab.wait_nodes(ready=False, timeout=15)
    lab.mark("every node unready" if unready else "nodes still ready", short="unready")
    await asyncio.sleep(2.0)
    await lab.start_redis()
    ready = await lab.wait_nodes(ready=True, timeout=30)
    lab.mark("every node ready again" if ready else "nodes not ready", short="ready")
    lab.results["redis"] = {"went_unready": unready, "came_back": ready}


def redis_restart_checks(report: Mapping[str, Any], lab: Lab) -> list[Check]:
    seen = lab.results.get("redis", {})
    return [
        {
            "name": "nodes went unready without Redis and came back",
            "ok": bool(seen.get("went_unready")) and bool(seen.get("came_back")),
            "detail": str(seen),
        }
    ]


# -- a node at its connection cap ------------------------------------------------------


def capped_node(options: LabOptions) -> dict[int, dict[str, Any]]:
    cap = max(1, options.clients // (2 * max(options.nodes, 1)))
    return {0: {"server": {"connection_limit": cap}}}


def handshakes_refused(metrics: str, reason: str) -> int:
    """``wsfleet_handshakes_refused{reason=...}`` from a /metrics text (0 if absent)."""
    pattern = rf'^wsfleet_handshakes_refused(?:_total)?\{{reason="{re.escape(reason)}"\}} (\S+)$'
    match = re.search(pattern, metrics, re.M)
    return int(float(match.group(1))) if match else 0


def refused_at_cap(metrics: str) -> int:
    """``wsfleet_handshakes_refused{reason="connection_limit"}`` from a /metrics text."""
    return handshakes_refused(metrics, "connection_limit")


async def node_cap(lab: Lab) -> None:
    node = lab.fleet.nodes[0]
    await asyncio.sleep(2.0)
    _, metrics = await node.probe("/metrics")
    _, status = await node.probe("/status")
    lab.results["cap"] = {
        "node": node.name,
        "cap": lab.options.node_settings[0]["server"]["connection_limit"],
        "refused": refused_at_cap(metrics),
        "clients": int(json.loads(status)["num_clients"]),
    }
    lab.mark(f"{node.name}: {lab.results['cap']}", short="cap", action="cap")


def node_cap_checks(report: Mapping[str, Any], lab: Lab) -> list[Check]:
    cap = lab.results.get("cap", {})
    series = report["reconnects_per_second"]
    stop = next((m["t"] for m in report["marks"] if m["short"] == "stop"), len(series))
    last = series[max(0, int(stop) - SETTLED_SECONDS) : int(stop)]
    return [
        {
            "name": "the capped node refused the clients beyond its cap",
            "ok": bool(cap) and cap["refused"] > 0 and cap["clients"] <= cap["cap"],
            "detail": str(cap),
        },
        {
            "name": f"the fleet settles: no reconnects in the last {SETTLED_SECONDS} s",
            "ok": not any(last),
            "detail": f"reconnects per second then: {last}",
        },
    ]


SETTLED_SECONDS = 5
"""node-cap: once the clients are in, nothing should move them; judged over this many seconds."""


SCENARIOS: dict[str, Scenario] = {
    "rolling-restart": Scenario("rolling-restart", rolling_restart, rolling_restart_checks),
    "scale-up": Scenario(
        "scale-up",
        scale_up,
        scale_up_checks,
        nodes=2,
        settings={"rebalance": {"mode": "on", "interval": 1.0, "rate": 50}},
    ),
    "kill-node": Scenario("kill-node", kill_node, kill_node_checks, presence_clients=30),
    "redis-restart": Scenario("redis-restart", redis_restart, redis_restart_checks),
    "node-cap": Scenario("node-cap", node_cap, node_cap_checks, node_settings=capped_node),
}


# -- one run ----------------------------------------------------------------------------


def options_for(
    name: str, *, settings: Mapping[str, Any] | None = None, **given: Any
) -> LabOptions:
    """Lab options for scenario ``name``: its defaults, then ``given`` and ``settings``.

    ``settings`` go over the scenario's own node settings (as ``--set`` does).
    """
    scenario = SCENARIOS[name]
    given.setdefault("nodes", scenario.nodes)
    given.setdefault("presence_clients", scenario.presence_clients)
    options = LabOptions(scenario=name, **given)
    options.settings = merge(scenario.settings, settings or {})
    if not options.node_settings:
        options.node_settings = scenario.node_settings(options)
    return options


async def run_scenario(options: LabOptions, scenario: Scenario) -> dict[str, Any]:
    """Play ``scenario`` on a lab built from ``options``; the report (files written too)."""
    async with Lab(options) as lab:
        await lab.start_clients()
        lab.start_publisher()
        await asyncio.sleep(options.warmup)
        lab.mark(f"scenario {scenario.name} begins", short="go", action="begin")
        await scenario.play(lab)
        records = await lab.finish()
        report = analyze(
            clients=records,
            published=[p.as_json() for p in lab.publisher.records],
            samples=lab.observer.samples,
            marks=lab.marks,
            meta=lab.meta(),
        )
        report["checks"] = scenario.checks(report, lab)
        report["results"] = lab.results
    write_outputs(options.out, report, records)
    return report


def write_outputs(out: Path, report: Mapping[str, Any], records: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    slim = {k: v for k, v in report.items() if k not in ("client_ids", "client_losses")}
    (out / "report.json").write_text(json.dumps(slim, indent=1, default=str))
    (out / "report.md").write_text(render_markdown(report, "connections.png"))
    (out / "clients.json").write_text(json.dumps(records, separators=(",", ":")))
    plot(report, out / "connections.png")
    (out / "summary.txt").write_text(render_text(report) + "\n")
