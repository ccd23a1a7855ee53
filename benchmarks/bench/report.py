"""A run's figures as JSON, markdown tables, ratios, PNG plots and a capacity profile.

The ratios are wsfleet/peer for each figure, with the direction that is better; the
issue's targets are checked against them and every miss is named. The capacity profile
is what ``wsfleet capacity --profile`` reads.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["FIGURES", "capacity_profile", "check_targets", "machine", "markdown", "plots", "ratios"]


def machine() -> dict[str, Any]:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    import os

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in ("wsfleet", "picows", "uvloop", "msgspec")},
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


# -- figures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    get: Callable[[dict[str, Any]], float | None]


def _dig(*path: str) -> Callable[[dict[str, Any]], float | None]:
    def get(result: dict[str, Any]) -> float | None:
        node: Any = result
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return float(node) if isinstance(node, int | float) else None

    return get


def _fanout_figures(results: dict[str, Any]) -> Iterator[Figure]:
    shapes: list[str] = []
    for result in results.values():
        for key in result.get("fanout", {}):
            if key not in shapes and key != "error":
                shapes.append(key)
    for shape in shapes:
        yield Figure(
            f"fanout.{shape}", f"fan-out {shape}", "deliveries/s", True,
            _dig("fanout", shape, "max_delivered_per_s"),
        )  # fmt: skip
        yield Figure(
            f"cpu.{shape}", f"CPU per delivery {shape}", "µs", False,
            _dig("fanout", shape, "cpu_per_delivery_us_at_max"),
        )  # fmt: skip


def _first_step_p99(nodes: str) -> Callable[[dict[str, Any]], float | None]:
    """p99 in the latency ramp's first step: the same offered load for every server."""

    def get(result: dict[str, Any]) -> float | None:
        ramp = result.get("latency", {}).get(nodes, {}).get("ramp") or [{}]
        value = ramp[0].get("latency", {}).get("p99_ms")
        return float(value) if isinstance(value, int | float) else None

    return get


FIXED = [
    Figure("idle.bytes", "RSS per idle connection", "bytes", False, _dig("idle", "bytes_per_connection")),
    Figure("connect.rate", "connect rate", "connections/s", True, _dig("connect", "per_second")),
    Figure(
        "latency.1.p99", "p99 latency at 50%, one node", "ms", False,
        _dig("latency", "one_node", "at", "0.5", "latency", "p99_ms"),
    ),
    Figure(
        "latency.2.p99", "p99 latency at 50%, two nodes", "ms", False,
        _dig("latency", "two_nodes", "at", "0.5", "latency", "p99_ms"),
    ),
    Figure("latency.1.p99.20k", "p99 latency at 20,000 deliveries/s, one node", "ms", False, _first_step_p99("one_node")),
    Figure("latency.2.p99.20k", "p99 latency at 20,000 deliveries/s, two nodes", "ms", False, _first_step_p99("two_nodes")),
    Figure(
        "latency.2.max", "max deliveries/s, two nodes", "deliveries/s", True,
        _dig("latency", "two_nodes", "max_delivered_per_s"),
    ),
]  # fmt: skip


def FIGURES(results: dict[str, Any]) -> list[Figure]:
    return [*_fanout_figures(results), *FIXED]


def ratios(results: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """``{figure key: {peer: wsfleet/peer}}``."""
    ours = results.get("wsfleet", {})
    out: dict[str, dict[str, float | None]] = {}
    for fig in FIGURES(results):
        mine = fig.get(ours)
        row: dict[str, float | None] = {}
        for peer, result in results.items():
            if peer == "wsfleet":
                continue
            theirs = fig.get(result)
            row[peer] = mine / theirs if mine is not None and theirs else None
        out[fig.key] = row
    return out


# -- the targets ---------------------------------------------------------------


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: the figure, what it must reach, what it reached, met or not."""
    ours = results.get("wsfleet", {})
    checks: list[dict[str, Any]] = []

    def add(name: str, value: float | None, bound: float, at_least: bool, why: str = "") -> None:
        met = value is not None and (value >= bound if at_least else value <= bound)
        checks.append({"target": name, "value": value, "bound": bound, "at_least": at_least,
                       "met": met, "note": why if value is None else ""})  # fmt: skip

    rows = ratios(results)
    for shape_key in (f.key for f in FIGURES(results) if f.key.startswith("fanout.")):
        row = rows[shape_key]
        for peer, bound in (("python-socketio", 3.0), ("node-socket.io", 1.0), ("picows-raw", 0.4)):
            add(f"{shape_key} vs {peer}", row.get(peer), bound, True, f"{peer} not measured")
    add(
        "RSS per idle connection (bytes)", _dig("idle", "bytes_per_connection")(ours), 12_000, False
    )
    add("connect rate vs python-socketio", rows["connect.rate"].get("python-socketio"), 2.0, True,
        "python-socketio not measured")  # fmt: skip
    add("p99 ms at 50%, two nodes over Redis", _dig("latency", "two_nodes", "at", "0.5", "latency", "p99_ms")(ours),
        20.0, False)  # fmt: skip
    return checks


# -- capacity --------------------------------------------------------------------------


def _at_max(steps: list[dict[str, Any]]) -> float:
    """CPU seconds per delivery in the step that delivered the most."""
    best = max(steps, key=lambda s: s["delivered_per_s"])
    return float(best["cpu_per_delivery_us"]) / 1e6


def split_costs(few: tuple[int, float], more: tuple[int, float]) -> tuple[float, float]:
    """(per delivery, per publication) from two shapes' CPU per delivery.

    Each shape is (subscribers per publication, CPU seconds per delivery), with every
    delivery its own write (few subscribers per channel): per delivery = d + p / n. Two
    fan-outs give two equations. If noise leaves either cost not positive, both are set
    to the larger measured cost per delivery: an upper bound for each.
    """
    (n1, c1), (n2, c2) = few, more
    per_pub = (c1 - c2) / (1 / n1 - 1 / n2) if n1 != n2 else 0.0
    per_delivery = c1 - per_pub / n1
    if per_pub <= 0 or per_delivery <= 0:
        worst = max(c1, c2)
        return worst, worst
    return per_delivery, per_pub


def capacity_profile(meta: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any] | None:
    """What ``wsfleet capacity`` needs, from wsfleet's own figures; None if any is missing.

    CPU per delivery and per publication come from the two shapes where every delivery
    is its own write: the many-channels fan-out (5 subscribers per channel) and the
    one-node latency ramp (10). A big channel's deliveries coalesce and cost less, so
    this sizes for the expensive case. The maximum is the highest one-channel figure.
    """
    fan = ours.get("fanout", {})
    one = [v for k, v in fan.items() if k.startswith("one-channel-")]
    many = [v for k, v in fan.items() if "-channels-of-" in k]
    ramp = ours.get("latency", {}).get("one_node", {})
    if not (one and many and ramp.get("ramp") and "idle" in ours and "connect" in ours):
        return None
    per_delivery, per_pub = split_costs(
        (many[0]["per_channel"], _at_max(many[0]["steps"])),
        (ramp["per_channel"], _at_max(ramp["ramp"])),
    )
    m = meta["machine"]
    return {
        "machine": f"{m['cores']} cores {m['cpu']}, Linux {m['kernel']}, Python {m['python']}",
        "measured": meta["date"][:10],
        "wsfleet": m["versions"]["wsfleet"],
        "memory_base_bytes": int(ours["idle"]["base_rss_bytes"]),
        "memory_per_connection_bytes": int(ours["idle"]["bytes_per_connection"]),
        "cpu_per_delivery_seconds": per_delivery,
        "cpu_per_publication_seconds": per_pub,
        "cpu_per_connect_seconds": ours["connect"]["cpu_per_connect_us"] / 1e6,
        "max_deliveries_per_second": max(v["max_delivered_per_s"] for v in one),
    }


# -- markdown --------------------------------------------------------------------------


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "ratio":
        return f"{value:.2f}x"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


LOADGEN_BUSY = 0.9


def _busy_mark(fig: Figure, result: dict[str, Any]) -> str:
    if not fig.key.startswith("fanout."):
        return ""
    share = (
        result.get("fanout", {})
        .get(fig.key.removeprefix("fanout."), {})
        .get("loadgen_cpu_share_at_max")
    )
    return "\\*" if share is not None and share >= LOADGEN_BUSY else ""


def markdown(report: dict[str, Any]) -> str:
    results = report["targets"]
    names = list(results)
    meta = report["meta"]
    m = meta["machine"]
    lines = [
        f"### Run of {meta['date']}"
        + (
            " (interrupted: only what was measured before the stop)"
            if meta.get("interrupted")
            else ""
        )
        + (" (smoke: sizes too small to mean anything)" if meta["smoke"] else ""),
        "",
        f"{m['cores']} cores ({m['cpu']}), Linux {m['kernel']}, Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f"; server pinned to CPU {meta['server_cpus']}, load generator to {meta['loadgen_cpus']}; "
        f"{meta['workers']} load generator processes; {meta['seconds']:.0f} s."
        + "".join(f" Note: {n}." for n in meta.get("notes", [])),
        "",
        "| figure | unit | " + " | ".join(names) + " |",
        "|---|---|" + "---:|" * len(names),
    ]
    for fig in FIGURES(results):
        row = [_fmt(fig.get(results[n])) + _busy_mark(fig, results[n]) for n in names]
        lines.append(f"| {fig.label} | {fig.unit} | " + " | ".join(row) + " |")
    lines += [
        "",
        f"\\* the load generator's core was at least {LOADGEN_BUSY:.0%} busy at that figure: the server may do more.",
    ]
    peers = names[1:]
    if peers:
        lines += ["", "wsfleet/peer (↑: higher is better for wsfleet, ↓: lower is better):", ""]
        lines += ["| figure | | " + " | ".join(peers) + " |", "|---|---|" + "---:|" * len(peers)]
        rows = ratios(results)
        for fig in FIGURES(results):
            cells = [_fmt(rows[fig.key].get(p), "ratio") for p in peers]
            lines.append(
                f"| {fig.label} | {'↑' if fig.higher_is_better else '↓'} | "
                + " | ".join(cells)
                + " |"
            )
    storm = results.get("wsfleet", {}).get("storm")
    if storm:
        lines += [
            "",
            f"Storm: {storm['clients']:,} clients, one of two nodes drained over "
            f"{storm['drain_window_s']:g} s: {storm['reconnected']:,} reconnects, all back after "
            f"{storm['seconds_until_all_connected']:.1f} s, peak {storm['peak_reconnects_per_s']:,}/s, "
            f"{storm['lost']} lost, {storm['duplicates']} duplicated, {storm['published']:,} published.",
        ]
    checks = report.get("checks", [])
    if checks:
        lines += ["", "| target | bound | measured | met |", "|---|---:|---:|---|"]
        for c in checks:
            bound = ("≥ " if c["at_least"] else "≤ ") + _fmt(c["bound"])
            lines.append(
                f"| {c['target']} | {bound} | {_fmt(c['value'])} | {'yes' if c['met'] else 'NO'} {c['note']} |"
            )
    return "\n".join(lines) + "\n"


# -- plots -----------------------------------------------------------------------------


def plots(report: dict[str, Any], out: Path) -> list[Path]:
    """PNG plots: fan-out ramps, idle memory, latency; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    results = report["targets"]
    written = [
        _plot_idle(results, out / "bench-idle.png"),
        _plot_latency(results, out / "bench-latency.png"),
    ]
    shapes = [
        f.key.removeprefix("fanout.") for f in FIGURES(results) if f.key.startswith("fanout.")
    ]
    if shapes:
        written.insert(0, _plot_fanout(results, shapes, out / "bench-fanout.png"))
    return written


def _plot_fanout(results: dict[str, Any], shapes: list[str], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(shapes), figsize=(6 * len(shapes), 4.5), squeeze=False)
    for ax, shape in zip(axes[0], shapes, strict=True):
        for name, result in results.items():
            steps = result.get("fanout", {}).get(shape, {}).get("steps", [])
            if steps:
                xs = [s["published_per_s"] for s in steps]
                ax.plot(xs, [s["delivered_per_s"] for s in steps], marker="o", label=name)
        _decorate(
            ax,
            title=f"fan-out {shape}",
            xlabel="publications/s",
            ylabel="deliveries/s",
            xscale="log",
        )
    return _save(fig, path)


def _plot_idle(results: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, result in results.items():
        points = result.get("idle", {}).get("points", [])
        if points:
            mib = [p["rss_bytes"] / 2**20 for p in points]
            ax.plot([p["clients"] for p in points], mib, marker="o", label=name)
    _decorate(
        ax, title="server RSS, idle clients with one subscription", xlabel="clients", ylabel="MiB"
    )
    return _save(fig, path)


def _plot_latency(results: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, result in results.items():
        for nodes, label in (("one_node", "1 node"), ("two_nodes", "2 nodes")):
            at = result.get("latency", {}).get(nodes, {}).get("at", {})
            xs = sorted(at, key=float)
            ys = [at[x]["latency"]["p99_ms"] for x in xs]
            if xs and all(y is not None for y in ys):
                ax.plot([float(x) for x in xs], ys, marker="o", label=f"{name}, {label}")
    _decorate(
        ax,
        title="p99 publish-to-deliver latency",
        xlabel="fraction of max throughput",
        ylabel="ms",
        yscale="log",
    )
    return _save(fig, path)


def _decorate(ax: Any, **labels: str) -> None:
    """Titles, scales, a light grid, and a legend when something was plotted."""
    ax.set(**labels)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def dump(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=1, sort_keys=False) + "\n")
