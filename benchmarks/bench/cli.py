"""``wsfleet bench`` (also ``python -m benchmarks.bench``): run the scenarios, save the figures.

Without ``--compare`` only wsfleet is measured; ``--compare`` installs the peers (a
separate virtualenv for the Python ones, ``npm ci`` for the Node ones) and measures every
one in the same run, then prints the wsfleet/peer ratios and the issue's targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from benchmarks.bench import report
from benchmarks.bench.pool import Pool
from benchmarks.bench.procstat import pin, raise_nofile, split_cpus
from benchmarks.bench.run import Run
from benchmarks.bench.scenarios import SCENARIOS
from benchmarks.bench.servers import PeerTarget, Target, WsfleetTarget
from benchmarks.bench.sizes import FULL, SMOKE, Sizes, fit_descriptors

__all__ = ["ROOT", "main"]

ROOT = Path(__file__).resolve().parents[2]
PEERS = (
    "python-socketio",
    "django-channels",
    "broadcaster",
    "node-socket.io",
    "node-ws",
    "picows-raw",
)
DOCS = ROOT / "docs" / "benchmarks.md"
DOCS_MARK = "## Load generator runs"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wsfleet bench", description=__doc__.splitlines()[0])
    p.add_argument("--compare", action="store_true", help="also measure every peer (installs them)")
    p.add_argument("--targets", help=f"comma-separated: wsfleet and any of {', '.join(PEERS)}")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, default: all")
    p.add_argument(
        "--smoke", action="store_true", help="tiny sizes: seconds, proves it runs, measures nothing"
    )
    p.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results", help="where results go"
    )
    p.add_argument(
        "--no-docs", action="store_true", help="do not append the tables to docs/benchmarks.md"
    )
    p.add_argument(
        "--render", type=Path, metavar="JSON",
        help="rebuild the tables, plots and profile from a saved run; runs nothing",
    )  # fmt: skip
    p.add_argument(
        "--time-limit", type=float, default=3600.0, help="seconds; later scenarios are skipped"
    )
    return p


def _targets(args: argparse.Namespace) -> list[Target]:
    names = ["wsfleet", *PEERS] if args.compare else ["wsfleet"]
    if args.targets:
        names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = sorted(set(names) - {"wsfleet", *PEERS})
    if unknown:
        raise SystemExit(
            f"wsfleet bench: unknown target(s) {', '.join(unknown)}; known: wsfleet, {', '.join(PEERS)}"
        )
    specs: dict[str, Any] = {}
    if set(names) & {"python-socketio", "django-channels", "broadcaster"}:
        from benchmarks.peers.python_env import python_peer_specs

        print("installing the Python peers (.venv/bench-peers) …", file=sys.stderr)
        specs.update(python_peer_specs(ROOT))
    if set(names) & {"node-socket.io", "node-ws"}:
        from benchmarks.peers.node_env import node_peer_specs

        print("installing the Node peers (npm ci) …", file=sys.stderr)
        specs.update(node_peer_specs(ROOT))
    if "picows-raw" in names:
        from benchmarks.peers.node_env import picows_raw_spec

        specs["picows-raw"] = picows_raw_spec(ROOT)
    return [WsfleetTarget() if n == "wsfleet" else PeerTarget(specs[n]) for n in names]


class Progress:
    """One line per event, prefixed with elapsed time and the scenario's place in the run."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()
        self.where = ""

    def bar(self) -> str:
        width = 20
        filled = width * self.done // max(self.total, 1)
        return "[" + "#" * filled + "-" * (width - filled) + f"] {self.done}/{self.total}"

    def __call__(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"{elapsed:7.1f}s {self.bar()} {self.where}: {message}", file=sys.stderr, flush=True)


async def _scenario(run: Run, name: str, progress: Progress) -> Any:
    """One scenario, bounded by ``Sizes.scenario_limit``; a failure is recorded, not raised."""
    limit = run.sizes.scenario_limit
    try:
        return await asyncio.wait_for(SCENARIOS[name](run), limit)
    except TimeoutError:
        error = f"did not finish within {limit:.0f} s"
        # Workers may be stuck in the middle of a command: start fresh ones.
        run.pool.shutdown()
        run.pool = Pool(run.sizes.workers, run.loadgen_cpus)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    progress(f"FAILED: {error}")
    return {"error": error}


async def _run_target(
    run: Run, scenarios: list[str], progress: Progress, deadline: float, out: dict[str, Any]
) -> None:
    for name in scenarios:
        progress.where = f"{run.target.name} {name}"
        if time.monotonic() > deadline:
            out[name] = {"skipped": "time limit"}
            progress("skipped: time limit")
        else:
            progress("starting")
            value = await _scenario(run, name, progress)
            if value is not None:
                out[name] = value
        progress.done += 1


async def _run_all(
    targets: list[Target], scenarios: list[str], sizes: Sizes, limit: float, results: dict[str, Any]
) -> None:
    """Fills ``results`` as it goes, so that an interrupted run keeps what it measured."""
    server_cpus, loadgen_cpus = split_cpus()
    pin(loadgen_cpus)
    raise_nofile()
    results.update(server_cpus=sorted(server_cpus or []), loadgen_cpus=sorted(loadgen_cpus or []))
    progress = Progress(len(targets) * len(scenarios))
    deadline = time.monotonic() + limit
    pool = Pool(sizes.workers, loadgen_cpus)
    try:
        for target in targets:
            with tempfile.TemporaryDirectory(prefix=f"wsfleet-bench-{target.name}-") as tmp:
                run = Run(target, Path(tmp), pool, sizes, server_cpus, loadgen_cpus, progress)
                await _run_target(
                    run,
                    scenarios,
                    progress,
                    deadline,
                    results["targets"].setdefault(target.name, {}),
                )
                pool = run.pool
    finally:
        pool.shutdown()


def _docs_append(text: str) -> None:
    docs = DOCS.read_text()
    if DOCS_MARK not in docs:
        docs = (
            docs.rstrip("\n")
            + f"\n\n{DOCS_MARK}\n\nEach `wsfleet bench` run appends its tables here.\n"
        )
    DOCS.write_text(docs.rstrip("\n") + "\n\n" + text)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops a run as Ctrl-C does: cleanly, results saved


def _conclude(full: dict[str, Any]) -> dict[str, Any]:
    """Ratios, the targets and the capacity profile of a run's figures."""
    targets, meta = full["targets"], full["meta"]
    full["ratios"] = report.ratios(targets)
    full["checks"] = report.check_targets(targets) if len(targets) > 1 else []
    profile = report.capacity_profile(meta, targets.get("wsfleet", {}))
    full.pop("capacity_profile", None)
    if profile and not meta["smoke"]:
        full["capacity_profile"] = profile
    return full


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render:
        full = json.loads(args.render.read_text())
        args.smoke = full["meta"]["smoke"]
        return _save(_conclude(full), args)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        raise SystemExit(
            f"wsfleet bench: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
        )
    targets = _targets(args)
    sizes, capped = fit_descriptors(SMOKE if args.smoke else FULL)
    if capped:
        print(f"wsfleet bench: {capped}", file=sys.stderr)
    started = time.monotonic()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    ran: dict[str, Any] = {"targets": {}}
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        uvloop.run(_run_all(targets, scenarios, sizes, args.time_limit, ran))
    except KeyboardInterrupt:
        print("wsfleet bench: interrupted; saving what was measured", file=sys.stderr)
        ran["interrupted"] = True
    meta = {
        "date": date,
        "smoke": args.smoke,
        "machine": report.machine(),
        "server_cpus": ran.get("server_cpus", []),
        "loadgen_cpus": ran.get("loadgen_cpus", []),
        "workers": sizes.workers,
        "sizes": sizes.__dict__,
        "notes": [capped] if capped else [],
        "interrupted": bool(ran.get("interrupted")),
        "seconds": time.monotonic() - started,
    }
    return _save(_conclude({"meta": meta, "targets": ran["targets"]}), args)


def _save(full: dict[str, Any], args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench-smoke" if args.smoke else "bench"
    report.dump(full, out / f"{stem}.json")
    table = report.markdown(full)
    (out / f"{stem}.md").write_text(table)
    pngs = report.plots(full, out)
    if not (args.no_docs or args.smoke):
        _docs_append(table)
    print(table)
    print(
        f"saved {out / f'{stem}.json'}, {out / f'{stem}.md'}, " + ", ".join(p.name for p in pngs),
        file=sys.stderr,
    )
    failed = [
        f"{target} {name}: {value['error']}"
        for target, scenarios in full["targets"].items()
        for name, value in scenarios.items()
        if isinstance(value, dict) and "error" in value
    ]
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failed else 0
