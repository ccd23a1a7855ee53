"""Smoke run of the hot-path micro-benchmarks, so they never rot.

It checks that every benchmark ran and that its facts hold (copies delivered,
frames coalesced); it never compares a timing with a threshold.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = {
    "encode push 100 B (json)",
    "encode push 1 KiB (json)",
    "encode push 100 B (protobuf)",
    "encode push 1 KiB (protobuf)",
    "decode subscribe+publish+ping (json)",
    "decode subscribe+publish+ping (protobuf)",
    "hub fan-out N=1 (json)",
    "hub fan-out N=100 (json)",
    "hub fan-out N=1000 (json)",
    "hub fan-out N=1000 (protobuf)",
    "hub+outbox fan-out N=1000 (json)",
    "outbox push+flush M=10 (json)",
    "outbox push+flush M=100 (json)",
    "outbox push+flush M=1000 (json)",
}


def test_quick_run_saves_complete_and_sane_results(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.micro", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "micro.json").read_text())
    rows = {row["name"]: row for row in report["results"]}
    assert set(rows) == EXPECTED

    meta = report["meta"]
    assert meta["quick"] is True
    for key in ("platform", "cpu", "python", "wsfleet", "date"):
        assert meta[key], key

    for name, row in rows.items():
        assert math.isfinite(row["ns_per_op"]) and row["ns_per_op"] > 0, name
        assert row["ops_per_s"] > 0, name
        assert len(row["samples_ns"]) == row["repeats"] >= 1, name

    for name, row in rows.items():
        if row["group"] == "hub":
            assert row["copies_per_publication"] == row["subscribers"], name
            assert row["gaps"] == 0, name
            if "encodings_per_publication" in row:
                assert row["encodings_per_publication"] == 1, name
        if row["group"] == "outbox":
            assert row["messages_sent"] == row["messages_per_flush"], name
            assert 1 <= row["frames_written"] < row["messages_per_flush"], name
            assert row["overflows"] == 0, name

    table = (tmp_path / "micro.md").read_text()
    assert table in done.stdout
    assert all(f"| {name} |" in table for name in EXPECTED)
