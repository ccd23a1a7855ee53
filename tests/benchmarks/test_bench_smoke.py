"""The load generator's smoke run: every scenario, tiny sizes, through the real CLI.

Nothing here is a timing: the assertions are about what the load generator counts
(every delivery arrives, nothing is lost in the storm, every peer is driven) so that
the figures of a full run can be believed. ``--smoke`` never touches docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench.report import check_targets, markdown, ratios, split_costs
from benchmarks.bench.sizes import FULL, fit_descriptors

ROOT = Path(__file__).resolve().parents[2]
WSFLEET = Path(sys.executable).with_name("wsfleet")

pytestmark = pytest.mark.slow


PLOTS = ("bench-fanout.png", "bench-idle.png", "bench-latency.png")


def _bench(tmp_path: Path, *args: str, timeout: float, plots: tuple[str, ...] = PLOTS) -> dict:
    docs_before = (ROOT / "docs" / "benchmarks.md").read_text()
    proc = subprocess.run(
        [str(WSFLEET), "bench", "--smoke", "--out", str(tmp_path), *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (ROOT / "docs" / "benchmarks.md").read_text() == docs_before
    for name in ("bench-smoke.md", *plots):
        assert (tmp_path / name).stat().st_size > 0, name
    return json.loads((tmp_path / "bench-smoke.json").read_text())


@pytest.mark.timeout(240)
def test_every_scenario_runs_against_wsfleet(tmp_path: Path) -> None:
    report = _bench(tmp_path, timeout=200)
    ours = report["targets"]["wsfleet"]
    assert set(ours) == {"idle", "fanout", "latency", "connect", "storm"}

    clients = [p["clients"] for p in ours["idle"]["points"]]
    assert clients == [0, *report["meta"]["sizes"]["idle"]]
    assert ours["idle"]["bytes_per_connection"] > 0

    for shape in ours["fanout"].values():
        first = shape["steps"][0]
        # Deliveries counted from the frames match publications x subscribers exactly.
        assert first["delivered_share"] == pytest.approx(1.0), shape
        assert first["latency"]["samples"] > 0
        # Per load generator core, and only the load generator's own processes.
        assert 0 <= first["loadgen_cpu_share"] <= 1.1, first
    assert ours["latency"]["two_nodes"]["at"]["0.5"]["latency"]["samples"] > 0

    assert ours["connect"]["connections"] == report["meta"]["sizes"]["connect"]
    assert ours["connect"]["per_second"] > 0

    # A saved run's tables and plots can be rebuilt without running anything.
    again = tmp_path / "again"
    proc = subprocess.run(
        [str(WSFLEET), "bench", "--render", str(tmp_path / "bench-smoke.json"), "--out", str(again)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (again / "bench-smoke.md").read_text() == (tmp_path / "bench-smoke.md").read_text()

    storm = ours["storm"]
    drained = storm["closes"].get("3001", 0)
    assert drained > 0, storm
    assert storm["reconnected"] >= drained
    assert storm["recovered_subscriptions"] >= drained
    assert (storm["lost"], storm["duplicates"], storm["publish_failures"]) == (0, 0, 0), storm
    assert storm["drained_node_exit"] == 0


@pytest.mark.timeout(300)
def test_compare_drives_every_peer_and_prints_ratios(tmp_path: Path) -> None:
    report = _bench(tmp_path, "--compare", "--scenarios", "idle,fanout,connect", timeout=280)
    targets = report["targets"]
    assert list(targets) == [
        "wsfleet", "python-socketio", "django-channels", "broadcaster",
        "node-socket.io", "node-ws", "picows-raw",
    ]  # fmt: skip
    for name, result in targets.items():
        failed = {scenario: v["error"] for scenario, v in result.items() if "error" in v}
        assert not failed, (name, failed)
        for shape in result["fanout"].values():
            first = shape["steps"][0]
            assert first["delivered_share"] == pytest.approx(1.0), (name, shape)
            assert (first["publish_failures"], first["publish_error"]) == (0, ""), (name, first)
        assert result["connect"]["per_second"] > 0, name
    row = report["ratios"]["connect.rate"]
    assert set(row) == set(targets) - {"wsfleet"}
    assert all(value and value > 0 for value in row.values())
    table = (tmp_path / "bench-smoke.md").read_text()
    assert "wsfleet/peer" in table and "picows-raw" in table


def test_targets_are_checked_against_the_issue_bounds() -> None:
    def result(fan: float, rss: float, connect: float, p99: float) -> dict:
        return {
            "fanout": {"one-channel-1000": {"max_delivered_per_s": fan}},
            "idle": {"bytes_per_connection": rss},
            "connect": {"per_second": connect},
            "latency": {"two_nodes": {"at": {"0.5": {"latency": {"p99_ms": p99}}}}},
        }

    results = {
        "wsfleet": result(300.0, 11_000, 400, 15),
        "python-socketio": result(100.0, 30_000, 200, 40),
        "node-socket.io": result(400.0, 20_000, 900, 5),
        "picows-raw": result(500.0, 5_000, 1000, 1),
    }
    checks = {c["target"]: c["met"] for c in check_targets(results)}
    assert checks["fanout.one-channel-1000 vs python-socketio"] is True  # 3.0x
    assert checks["fanout.one-channel-1000 vs node-socket.io"] is False  # 0.75x
    assert checks["fanout.one-channel-1000 vs picows-raw"] is True  # 0.6x
    assert checks["RSS per idle connection (bytes)"] is True
    assert checks["connect rate vs python-socketio"] is True  # 2.0x
    assert checks["p99 ms at 50%, two nodes over Redis"] is True
    assert ratios(results)["idle.bytes"]["python-socketio"] == pytest.approx(11 / 30)

    results["wsfleet"]["idle"]["bytes_per_connection"] = 12_500
    del results["python-socketio"]
    checks = {c["target"]: c for c in check_targets(results)}
    assert checks["RSS per idle connection (bytes)"]["met"] is False
    assert checks["connect rate vs python-socketio"]["met"] is False
    assert "not measured" in checks["connect rate vs python-socketio"]["note"]
    meta = {"date": "2026-11-21 10:00 UTC", "smoke": False, "machine": {"cores": 2, "cpu": "x", "kernel": "k",
            "python": "3.11", "versions": {"wsfleet": "0.1.0"}}, "server_cpus": [0], "loadgen_cpus": [1],
            "workers": 4, "seconds": 1.0}  # fmt: skip
    text = markdown({"meta": meta, "targets": results, "checks": list(checks.values())})
    assert "| RSS per idle connection (bytes) | ≤ 12,000 | 12,500 | NO" in text


def test_costs_split_between_deliveries_and_publications() -> None:
    # 5 per publication: 1 + 20/5 = 5 us; 10 per publication: 1 + 20/10 = 3 us.
    per_delivery, per_pub = split_costs((5, 5e-6), (10, 3e-6))
    assert per_delivery == pytest.approx(1e-6)
    assert per_pub == pytest.approx(20e-6)
    # Noise that would make a cost negative: both get the larger cost, an upper bound.
    assert split_costs((5, 3e-6), (10, 5e-6)) == (5e-6, 5e-6)


def test_scenarios_past_the_time_limit_are_skipped_and_said_so(tmp_path: Path) -> None:
    report = _bench(
        tmp_path, "--time-limit", "0", "--scenarios", "idle,connect", timeout=120, plots=()
    )
    assert report["targets"]["wsfleet"] == {
        "idle": {"skipped": "time limit"},
        "connect": {"skipped": "time limit"},
    }


def test_idle_steps_are_capped_by_the_descriptor_limit() -> None:
    assert fit_descriptors(FULL, hard=1_000_000) == (FULL, "")
    sizes, note = fit_descriptors(FULL, hard=20_000)
    assert sizes.idle == (5_000, 10_000, 19_000)
    assert "19,000" in note and "20,000" in note
    sizes, _ = fit_descriptors(FULL, hard=8_000)
    assert sizes.idle == (5_000, 7_000)  # steps above the cap collapse into one
