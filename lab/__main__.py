"""``python -m lab [scenario] [options]``: play a scenario on a real fleet and report it.

Examples::

    python -m lab                                   # rolling restart, 3 nodes, 300 clients
    python -m lab scale-up --clients 600
    python -m lab kill-node --balancer haproxy
    python -m lab --balancer haproxy --keep-draining-backends
    python -m lab rolling-restart --clients 5000 --rate 5 --set drain.window=20
    python -m lab node-cap --set server.connection_limit=80

Writes report.json, report.md, summary.txt, connections.png (and the raw
clients.json, and every process's log under logs/) to ``--out``, prints the
summary, and exits 0 when nothing was lost, duplicated or reordered, nobody
was left disconnected, and the scenario's checks held; 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from lab.nodes import merge
from lab.report import render_text
from lab.scenarios import SCENARIOS, options_for, run_scenario
from lab.system import MissingProgram

__all__ = ["main", "parse_setting"]


def parse_setting(text: str) -> dict[str, Any]:
    """``a.b.c=value`` as ``{"a": {"b": {"c": value}}}``; the value read as JSON if it is JSON."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw  # a bare word: a string ("off", "5s")
    for part in reversed(key.split(".")):
        value = {part: value}
    result: dict[str, Any] = value
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lab", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("scenario", nargs="?", default="rolling-restart", choices=sorted(SCENARIOS))
    p.add_argument("--nodes", type=int, help="nodes at the start (default: the scenario's)")
    p.add_argument("--clients", type=int, default=300, help="SDK clients (default 300)")
    p.add_argument("--rate", type=float, default=20.0, help="publications per second (20)")
    p.add_argument(
        "--duration", type=float, default=0.0, help="seconds of publishing at least (0: auto)"
    )
    p.add_argument("--balancer", choices=["nginx", "haproxy"], default="nginx")
    p.add_argument("--affinity", action="store_true", help="cookie affinity in the balancer")
    p.add_argument(
        "--keep-draining-backends",
        action="store_true",
        help="a draining node stays in the balancer until it exits\n"
        "(only a health check takes it out: haproxy)",
    )
    p.add_argument("--workers", type=int, default=0, help="client processes (0: 1 per 1,500)")
    p.add_argument("--connect-rate", type=float, default=200.0, help="new clients per second")
    p.add_argument("--protobuf-every", type=int, default=0, help="every n-th client on Protobuf")
    p.add_argument("--out", type=Path, default=None, help="output directory (lab-out/<scenario>)")
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        type=parse_setting,
        default=[],
        metavar="KEY=VALUE",
        help="a node setting, e.g. drain.window=5 (repeatable)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings: dict[str, Any] = {}
    for one in args.settings:
        settings = merge(settings, one)
    given: dict[str, Any] = {
        "clients": args.clients,
        "rate": args.rate,
        "duration": args.duration,
        "balancer": args.balancer,
        "affinity": args.affinity,
        "keep_draining_backends": args.keep_draining_backends,
        "workers": args.workers,
        "connect_rate": args.connect_rate,
        "protobuf_every": args.protobuf_every,
        "out": args.out or Path("lab-out") / args.scenario,
    }
    if args.nodes:
        given["nodes"] = args.nodes
    options = options_for(args.scenario, settings=settings, **given)
    try:
        report = asyncio.run(run_scenario(options, SCENARIOS[args.scenario]))
    except MissingProgram as exc:
        print(f"python -m lab: {exc}", file=sys.stderr)
        return 2
    print(f"report: {options.out}/report.md, report.json, connections.png")
    print(render_text(report))  # ends with the zero-loss line
    t = report["totals"]
    clean = not (t["lost"] or t["duplicates"] or t["out_of_order"] or t["left_disconnected"])
    return 0 if clean and all(c["ok"] for c in report["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
