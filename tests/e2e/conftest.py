"""Fixtures of the end-to-end tests: a lab run per test, its logs shown when it fails.

Each test plays one scenario of the fleet lab (:mod:`lab.scenarios`) with
everything real: a private ``redis-server``, ``wsfleet serve`` processes, a
real nginx (or HAProxy) in front of them configured as an ingress, official
``centrifuge-python`` clients in worker processes, and a publisher through the
server API. The settings are small (short drain window, fast heartbeats, a
few hundred clients) so that each test takes well under a minute on two cores.

Nothing here is a timing assertion: bounds that appear in the tests (the
reconnect rate of a drain, the presence bound) are behaviours derived from
the settings, each with its stated slack.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from lab.environment import LabOptions
from lab.nodes import merge
from lab.scenarios import SCENARIOS, Scenario, options_for, run_scenario

CLIENTS = 300
RATE = 20.0

FAST: dict[str, Any] = {
    "fleet": {"heartbeat_interval": 1.0},
    "drain": {"readiness_delay": 0.5, "window": 3.0, "timeout": 15.0},
}
"""Settings every test's nodes get: a short drain and a fast registry."""


@pytest.fixture
def lab_out(tmp_path: Path) -> Path:
    """Where the test's lab run writes its report, records and every process's log."""
    return tmp_path / "lab"


class Played(NamedTuple):
    report: dict[str, Any]
    options: LabOptions


async def play(
    name: str,
    out: Path,
    settings: dict[str, Any] | None = None,
    *,
    scenario: Scenario | None = None,
    **given: Any,
) -> Played:
    """Run scenario ``name`` with the tests' defaults; its report and the options it ran with.

    ``scenario`` plays instead of the named one (with the named one's options),
    for a test that watches more than the scenario does.
    """
    given.setdefault("clients", CLIENTS)
    given.setdefault("rate", RATE)
    given.setdefault("workers", 2)
    given.setdefault("connect_rate", 300.0)
    options = options_for(name, settings=merge(FAST, settings or {}), out=out, **given)
    return Played(await run_scenario(options, scenario or SCENARIOS[name]), options)


def assert_delivered(report: dict[str, Any]) -> None:
    """Every client got every publication made after it subscribed, once and in order.

    And none is left disconnected, no client record has a problem, and the
    publisher never gave up on a publication.
    """
    t = report["totals"]
    assert t["clients"] == CLIENTS
    assert (t["lost"], t["duplicates"], t["out_of_order"]) == (0, 0, 0), report["worst_clients"]
    assert t["left_disconnected"] == 0, report["worst_clients"]
    assert t["problems"] == 0, report["worst_clients"]
    assert t["expected"] == t["received"] > 0
    assert t["publish_gave_up"] == 0


def _tails(out: Path, lines: int = 40) -> list[tuple[str, str]]:
    logs = out / "logs"
    found = [
        *sorted(logs.glob("*.log")),
        *sorted(logs.glob("*/error.log")),  # nginx
        *sorted(logs.glob("*/haproxy.out")),
    ]
    sections = []
    for path in found:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        sections.append((f"{path.relative_to(out)} (last {len(tail)} lines)", "\n".join(tail)))
    summary = out / "summary.txt"
    if summary.exists():
        sections.append(("lab summary", summary.read_text()))
    return sections


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and call.when == "call":
        out = getattr(item, "funcargs", {}).get("lab_out")
        if isinstance(out, Path) and out.exists():
            report.sections.extend(_tails(out))
    return report
