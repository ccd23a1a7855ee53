from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import msgspec

from tests.node_harness import running_node
from wsfleet.core.lifecycle import Phase

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reference" / "metrics.md"


async def _get(url: str) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


async def test_health_status_and_metrics_while_ready() -> None:
    async with running_node({"dev": True}) as node:
        base = node.internal_url
        assert (await _get(f"{base}/livez"))[0] == 200
        assert (await _get(f"{base}/readyz"))[0] == 200
        status, body, _ = await _get(f"{base}/status")
        info = msgspec.json.decode(body)
        assert status == 200 and info["phase"] == "ready" and info["ready"] is True
        for key in ("uid", "num_clients", "num_subs", "num_channels", "uptime", "process"):
            assert key in info
        assert info["process"]["rss"] > 0
        status, metrics, headers = await _get(f"{base}/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert "wsfleet_ready 1.0" in metrics


async def test_draining_node_is_not_ready_but_live_and_refuses_handshakes() -> None:
    async with running_node({"dev": True}) as node:
        node.node.lifecycle.advance(Phase.DRAINING)
        base = node.internal_url
        status, body, _ = await _get(f"{base}/readyz")
        assert status == 503 and "draining" in body
        assert (await _get(f"{base}/livez"))[0] == 200
        async with aiohttp.ClientSession() as http:
            try:
                await http.ws_connect(node.ws_url)
                raise AssertionError("handshake accepted while draining")
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 503
                assert exc.headers is not None and "Retry-After" in exc.headers
        assert node.node.stats.handshakes_refused["draining"] == 1


async def test_every_exported_metric_is_documented_and_every_documented_one_exported() -> None:
    async with running_node({"dev": True}) as node:
        _, metrics, _ = await _get(f"{node.internal_url}/metrics")
    exported_names = set(re.findall(r"^# TYPE (wsfleet_\w+) ", metrics, re.M))
    documented = set(re.findall(r"`(wsfleet_\w+)`", DOCS.read_text()))
    assert exported_names - documented == set(), "undocumented metrics"
    assert documented - exported_names == set(), "documented metrics that do not exist"
