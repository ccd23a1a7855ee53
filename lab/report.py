"""What happened in a lab run: from the raw records to numbers, text, JSON and a PNG.

Inputs: every client's event record (:mod:`lab.clients`), the publisher's
records (:mod:`lab.publisher`), the observer's samples (:mod:`lab.observer`)
and the scenario's marks (what was done when). :func:`analyze` is pure and
returns one JSON-able dict; the renderers turn it into text, Markdown and a
plot.

How a client is judged, precisely. A publication counts once the server API
acknowledged it: it then has an (epoch, offset) in the channel's stream and
carries the publisher's sequence number ``seq``. A client's record is cut
into *stretches*: a stretch starts at the client's first ``subscribed``
(position: epoch E, offset o) and at every later ``subscribed`` that did not
recover (``recovered`` false: the client was told that its state is lost and
where the stream stands now); a recovered resubscribe continues the stretch.
Then, for each client:

* **expected**: every acknowledged publication of a stretch's epoch E with an
  offset above the stretch's start o (published after the client subscribed;
  for a stretch that was followed by a resync in the same epoch, only up to
  the resync's offset);
* **lost**: expected and never received. This includes publications missed
  by a client that was left disconnected at the end: the lab wants every
  client to have everything;
* **unrecovered (told)**: publications of a stretch that ended with a resync,
  past the last one the client received in it: the client was told it missed
  them (``recovered: false``); they are counted apart, not as lost;
* **duplicates**: receptions of a ``seq`` the client had already received;
* **out of order**: receptions of a ``seq`` lower than one received before it
  (duplicates aside);
* **left disconnected**: at the end (after the publisher stopped and every
  client had the last publication, or the settle time ran out), the client
  was not connected, or its subscription was not subscribed.

A **reconnect** is every ``connected`` event of a client after its first.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ClientVerdict", "analyze", "judge_client", "plot", "render_markdown", "render_text"]

Event = Sequence[Any]
Position = tuple[str, int]  # (epoch, offset)


@dataclass
class ClientVerdict:
    """One client's numbers (see the module docstring for the definitions)."""

    index: int
    received: list[int] = field(default_factory=list)
    expected: int = 0
    lost: list[int] = field(default_factory=list)
    told: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    resyncs: int = 0
    recovered_resubscribes: int = 0
    reconnects: list[float] = field(default_factory=list)
    reconnect_codes: Counter[int] = field(default_factory=Counter)
    terminal_codes: Counter[int] = field(default_factory=Counter)
    left_disconnected: bool = False
    final: str = ""
    client_ids: list[tuple[float, str]] = field(default_factory=list)
    losses: list[tuple[float, int]] = field(default_factory=list)
    """(time, code) of each lost connection (the SDK's ``connecting`` code)."""
    latencies: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class _Stretch:
    epoch: str
    start: int
    end: int | None = None  # exclusive upper bound on offsets (a resync in the same epoch)
    last_received: int = -1
    told: bool = False


def judge_client(
    record: Mapping[str, Any],
    channel: str,
    acked: Mapping[Position, int],
    sent_at: Mapping[int, float],
) -> ClientVerdict:
    """The verdict on one client's record; ``acked`` maps (epoch, offset) to seq."""
    verdict = ClientVerdict(index=int(record["index"]))
    stretches: list[_Stretch] = []
    seen: set[int] = set()
    top = -1
    connected_once = False
    ended = False
    for event in record["events"]:
        kind = event[0]
        if kind == "p":
            _publication(verdict, stretches, event, seen, top, sent_at)
            top = max(top, int(event[2]))
            seen.add(int(event[2]))
        elif kind == "subscribed" and event[2] == channel:
            _subscribed(verdict, stretches, event)
        elif kind == "connected":
            verdict.client_ids.append((float(event[1]), str(event[2])))
            if connected_once:
                verdict.reconnects.append(float(event[1]))
            connected_once = True
        elif kind == "connecting" and int(event[2]) != 0 and not ended:
            verdict.reconnect_codes[int(event[2])] += 1
            verdict.losses.append((float(event[1]), int(event[2])))
        elif kind == "disconnected" and not ended:
            verdict.terminal_codes[int(event[2])] += 1
        elif kind == "final":
            ended = True
            verdict.final = f"{event[2]}/{event[3]}"
            verdict.left_disconnected = (event[2], event[3]) != ("connected", "subscribed")
    _expected(verdict, stretches, acked, seen)
    return verdict


def _publication(
    verdict: ClientVerdict,
    stretches: list[_Stretch],
    event: Event,
    seen: set[int],
    top: int,
    sent_at: Mapping[int, float],
) -> None:
    t, seq, offset = float(event[1]), int(event[2]), int(event[3])
    verdict.received.append(seq)
    if seq in seen:
        verdict.duplicates += 1
    elif seq < top:
        verdict.out_of_order += 1
    if stretches:
        stretch = stretches[-1]
        stretch.last_received = max(stretch.last_received, offset)
    else:
        verdict.problems.append(f"publication {seq} before any subscribe")
    sent = sent_at.get(seq)
    if sent is not None:
        verdict.latencies.append(t - sent)


def _subscribed(verdict: ClientVerdict, stretches: list[_Stretch], event: Event) -> None:
    was_recovering, recovered = bool(event[3]), bool(event[4])
    offset, epoch = int(event[5]), str(event[6])
    if stretches and recovered:
        verdict.recovered_resubscribes += 1
        if epoch != stretches[-1].epoch:
            verdict.problems.append(f"recovered into another epoch {epoch}")
        return
    if stretches:
        verdict.resyncs += 1
        previous = stretches[-1]
        previous.told = True
        if previous.epoch == epoch:
            previous.end = offset + 1
        if not was_recovering:
            verdict.problems.append("resubscribed without asking to recover")
    stretches.append(_Stretch(epoch=epoch, start=offset))


def _expected(
    verdict: ClientVerdict,
    stretches: list[_Stretch],
    acked: Mapping[Position, int],
    seen: set[int],
) -> None:
    by_epoch: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for (epoch, offset), seq in acked.items():
        by_epoch[epoch].append((offset, seq))
    for stretch in stretches:
        for offset, seq in by_epoch.get(stretch.epoch, ()):
            if offset <= stretch.start or (stretch.end is not None and offset >= stretch.end):
                continue
            if seq in seen:
                verdict.expected += 1
            elif stretch.told and offset > stretch.last_received:
                verdict.told += 1
            else:
                verdict.expected += 1
                verdict.lost.append(seq)


def analyze(
    *,
    clients: Sequence[Mapping[str, Any]],
    published: Sequence[Mapping[str, Any]],
    samples: Sequence[Mapping[str, Any]],
    marks: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything the report shows, as one JSON-able dict (no I/O)."""
    t0 = float(meta["started_at"])
    channel = str(meta["channel"])
    acked = {(str(p["epoch"]), int(p["offset"])): int(p["seq"]) for p in published if p["acked"]}
    sent_at = {int(p["seq"]): float(p["sent"]) for p in published}
    verdicts = [judge_client(c, channel, acked, sent_at) for c in clients]
    reconnects = sorted(t for v in verdicts for t in v.reconnects)
    series = per_second(reconnects, t0, float(meta.get("ended_at", t0)))
    latencies = sorted(x for v in verdicts for x in v.latencies)
    totals = {
        "clients": len(verdicts),
        "published": len(published),
        "acknowledged": len(acked),
        "epochs": len({epoch for epoch, _ in acked}),
        "publish_retried": sum(1 for p in published if int(p["attempts"]) > 1),
        "publish_gave_up": sum(1 for p in published if not p["acked"]),
        "expected": sum(v.expected for v in verdicts),
        "received": sum(len(v.received) for v in verdicts),
        "lost": sum(len(v.lost) for v in verdicts),
        "clients_with_loss": sum(1 for v in verdicts if v.lost),
        "duplicates": sum(v.duplicates for v in verdicts),
        "out_of_order": sum(v.out_of_order for v in verdicts),
        "left_disconnected": sum(1 for v in verdicts if v.left_disconnected),
        "unrecovered_resubscribes": sum(v.resyncs for v in verdicts),
        "unrecovered_told_publications": sum(v.told for v in verdicts),
        "recovered_resubscribes": sum(v.recovered_resubscribes for v in verdicts),
        "reconnects": len(reconnects),
        "max_reconnects_per_second": max(series, default=0),
        "reconnects_before_scenario": _between(reconnects, marks, "clients in", "go"),
        "problems": sum(len(v.problems) for v in verdicts),
    }
    return {
        "meta": dict(meta),
        "totals": totals,
        "latency_ms": _percentiles(latencies),
        "reconnects_per_second": series,
        "reconnect_codes": _histogram(v.reconnect_codes for v in verdicts),
        "terminal_disconnect_codes": _histogram(v.terminal_codes for v in verdicts),
        "connections": connections_per_node(samples, t0, _clients_stopped(clients)),
        "marks": [{**m, "t": round(float(m["t"]) - t0, 3)} for m in marks],
        "worst_clients": _worst(verdicts),
        "client_ids": {str(v.index): v.client_ids for v in verdicts},
        "client_losses": {str(v.index): v.losses for v in verdicts},
    }


def _between(times: Sequence[float], marks: Sequence[Mapping[str, Any]], a: str, b: str) -> int:
    """How many ``times`` fall between the marks whose ``short`` names are ``a`` and ``b``."""
    at = {str(m.get("short")): float(m["t"]) for m in marks}
    if a not in at or b not in at:
        return 0
    return sum(1 for t in times if at[a] <= t < at[b])


def per_second(times: Iterable[float], t0: float, t1: float) -> list[int]:
    """How many of ``times`` fall in each second from ``t0`` (bins up to ``t1`` at least)."""
    counts: Counter[int] = Counter(math.floor(t - t0) for t in times)
    last = max([int(t1 - t0), *counts.keys()], default=0)
    return [counts.get(i, 0) for i in range(max(0, last + 1))]


def _clients_stopped(clients: Sequence[Mapping[str, Any]]) -> float:
    """When the first client was told to stop (its ``final`` event); inf if none was."""
    finals = [float(e[1]) for c in clients for e in c["events"] if e[0] == "final"]
    return min(finals, default=math.inf)


def connections_per_node(
    samples: Sequence[Mapping[str, Any]], t0: float, until: float = math.inf
) -> dict[str, Any]:
    """``{node: [[t, num_clients], ...]}`` (t from the run's start), ``up`` samples only.

    Samples from ``until`` on (the clients leaving at the end of the run) are left out.
    """
    out: dict[str, list[list[float]]] = defaultdict(list)
    for s in samples:
        if s["up"] and float(s["t"]) < until:
            out[str(s["node"])].append([round(float(s["t"]) - t0, 3), int(s["num_clients"])])
    return dict(out)


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    ms = [v * 1000 for v in values]
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {
        "p50": round(q[49], 1),
        "p90": round(q[89], 1),
        "p99": round(q[98], 1),
        "max": round(ms[-1], 1),
    }


def _histogram(counters: Iterable[Counter[int]]) -> dict[str, int]:
    total: Counter[int] = Counter()
    for c in counters:
        total.update(c)
    return {str(code): n for code, n in sorted(total.items())}


def _worst(verdicts: Sequence[ClientVerdict], limit: int = 10) -> list[dict[str, Any]]:
    bad = [
        v
        for v in verdicts
        if v.lost or v.duplicates or v.out_of_order or v.left_disconnected or v.problems
    ]
    return [
        {
            "index": v.index,
            "lost": v.lost[:20],
            "lost_count": len(v.lost),
            "duplicates": v.duplicates,
            "out_of_order": v.out_of_order,
            "final": v.final,
            "problems": v.problems[:5],
        }
        for v in bad[:limit]
    ]


# -- rendering -----------------------------------------------------------------------------


def zero_loss_line(totals: Mapping[str, Any]) -> str:
    return (
        f"lost {totals['lost']}, duplicates {totals['duplicates']}, "
        f"out of order {totals['out_of_order']}, left disconnected {totals['left_disconnected']}"
    )


def render_text(report: Mapping[str, Any]) -> str:
    """A readable summary; its last line is the zero-loss line."""
    meta, t = report["meta"], report["totals"]
    lat = report["latency_ms"]
    lines = [
        f"wsfleet lab: {meta['scenario']}, {meta['nodes']} nodes behind {meta['balancer']}, "
        f"{t['clients']} clients, {meta['rate']} publications/s, {meta['duration_s']} s",
        f"published {t['published']} (acknowledged {t['acknowledged']}, retried "
        f"{t['publish_retried']}, gave up {t['publish_gave_up']})",
        f"deliveries: expected {t['expected']}, received {t['received']}"
        + (
            f"; latency p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms"
            if lat
            else ""
        ),
        f"reconnects {t['reconnects']} (at most {t['max_reconnects_per_second']} in one second); "
        f"codes: {_codes(report['reconnect_codes'])}",
        f"resubscribes: recovered {t['recovered_resubscribes']}, not recovered "
        f"{t['unrecovered_resubscribes']} (publications they were told they missed: "
        f"{t['unrecovered_told_publications']})",
    ]
    if t["reconnects_before_scenario"]:
        lines.append(
            f"note: {t['reconnects_before_scenario']} reconnects before the scenario began, "
            "while nothing happened to the fleet (rebalancing on counts from the ramp-up?)"
        )
    if report["terminal_disconnect_codes"]:
        lines.append(f"terminal disconnects: {_codes(report['terminal_disconnect_codes'])}")
    lines.append("what was done:")
    lines += [f"  {m['t']:7.2f} s  {m['label']}" for m in report["marks"]]
    lines.append("connections per node at the end: " + _pairs(final_counts(report)))
    for check in report.get("checks", []):
        lines.append(
            f"check: {check['name']}: {'ok' if check['ok'] else 'FAILED'} ({check['detail']})"
        )
    for worst in report["worst_clients"][:5]:
        lines.append(f"  client {worst['index']}: {worst}")
    lines.append(zero_loss_line(t))
    return "\n".join(lines)


def final_counts(report: Mapping[str, Any]) -> dict[str, int]:
    """Each node's last sampled count, for the nodes still up at the last sampling round."""
    series = report["connections"]
    last = max((points[-1][0] for points in series.values() if points), default=0.0)
    return {
        node: int(points[-1][1])
        for node, points in sorted(series.items(), key=lambda kv: _node_order(kv[0]))
        if points and points[-1][0] >= last - 0.6
    }


def _codes(histogram: Mapping[str, int]) -> str:
    return ", ".join(f"{code} x {n}" for code, n in histogram.items()) or "none"


def _pairs(values: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items()) or "none"


def render_markdown(report: Mapping[str, Any], png_name: str) -> str:
    meta, t = report["meta"], report["totals"]
    rows = [
        ("clients", t["clients"]),
        ("publications acknowledged", t["acknowledged"]),
        ("deliveries expected / received", f"{t['expected']} / {t['received']}"),
        ("lost", t["lost"]),
        ("duplicates", t["duplicates"]),
        ("out of order", t["out_of_order"]),
        ("left disconnected", t["left_disconnected"]),
        (
            "resubscribes recovered / not recovered",
            f"{t['recovered_resubscribes']} / {t['unrecovered_resubscribes']}",
        ),
        ("reconnects (max per second)", f"{t['reconnects']} ({t['max_reconnects_per_second']})"),
        ("reconnects before the scenario began", t["reconnects_before_scenario"]),
        ("reconnect codes", _codes(report["reconnect_codes"])),
        ("delivery latency p50 / p99 / max (ms)", _latency(report["latency_ms"])),
        ("connections per node at the end", _pairs(final_counts(report))),
    ]
    lines = [
        f"# wsfleet lab: {meta['scenario']}",
        "",
        f"{meta['date']} on {meta['machine']}. Command: `{meta['command']}`",
        "",
        f"{meta['nodes']} nodes behind {meta['balancer']}, {t['clients']} SDK clients "
        f"(centrifuge-python) in {meta['workers']} worker process(es), a publisher at "
        f"{meta['rate']}/s, {meta['duration_s']} s. Settings given to the nodes: "
        f"`{json.dumps(meta.get('node_settings', {}), sort_keys=True)}`.",
        "",
        "| | |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        "What was done (seconds from the start):",
        "",
        *[f"- {m['t']:.2f} s: {m['label']}" for m in report["marks"]],
        "",
    ]
    if report.get("checks"):
        lines += ["Checks:", ""]
        lines += [
            f"- {c['name']}: {'ok' if c['ok'] else '**FAILED**'} ({c['detail']})"
            for c in report["checks"]
        ]
        lines.append("")
    lines += [
        f"![connections per node and reconnects per second]({png_name})",
        "",
        f"`{zero_loss_line(t)}`",
        "",
    ]
    return "\n".join(lines)


def _latency(lat: Mapping[str, float]) -> str:
    return f"{lat['p50']} / {lat['p99']} / {lat['max']}" if lat else "-"


def plot(report: Mapping[str, Any], path: Path) -> None:
    """Connections per node over time (top) and reconnects per second (bottom), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(11, 6.5), gridspec_kw={"height_ratios": [3, 2]}
    )
    for node, points in sorted(report["connections"].items(), key=lambda kv: _node_order(kv[0])):
        if points:
            top.plot([p[0] for p in points], [p[1] for p in points], label=node, linewidth=1.6)
    top.set_ylabel("connections per node")
    top.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, title="node")
    top.grid(alpha=0.3)
    series = report["reconnects_per_second"]
    bottom.bar([i + 0.5 for i in range(len(series))], series, width=0.9, color="tab:red")
    bottom.set_ylabel("reconnects per second")
    bottom.set_xlabel("seconds from the start")
    bottom.grid(alpha=0.3)
    for m in report["marks"]:
        for axis in (top, bottom):
            axis.axvline(m["t"], color="grey", linestyle="--", linewidth=0.8)
        top.annotate(
            m.get("short", m["label"]),
            (m["t"], 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            va="top",
            ha="right",
            color="dimgrey",
        )
    meta, t = report["meta"], report["totals"]
    fig.suptitle(
        f"wsfleet lab: {meta['scenario']}, {t['clients']} clients, {meta['balancer']} - "
        f"{zero_loss_line(t)}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _node_order(name: str) -> tuple[int, str]:
    number = name.rsplit("-", 1)[-1]
    return (int(number), name) if number.isdigit() else (1 << 30, name)
