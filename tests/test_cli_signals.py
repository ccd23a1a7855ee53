"""``wsfleet serve`` and its signals, as Kubernetes sends them: a real process.

SIGTERM drains and exits 0; a second signal cuts the drain short; a drain
that cannot finish in time (here: the broker frozen, so leaving the fleet
waits for the broker's command timeout) is ended by the watchdog at
drain.timeout with exit code 70, so the pod never outlives its grace period
silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
import yaml

from tests.redis_servers import node_port, redis_server
from wsfleet.cli import WATCHDOG_EXIT


@contextlib.contextmanager
def serve(
    tmp_path: Path, config: dict[str, Any]
) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    """``python -m wsfleet serve`` in dev mode with ``config``, until ready: (process, ports)."""
    port, internal = node_port(), node_port()
    server = {"host": "127.0.0.1", "port": port, "internal_host": "127.0.0.1"}
    server |= {"internal_port": internal, "log_format": "text"}
    path = tmp_path / "wsfleet.yaml"
    path.write_text(yaml.safe_dump({"dev": True, "server": server, **config}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSFLEET_")}
    argv = [sys.executable, "-m", "wsfleet", "serve", "--config", str(path)]
    with (tmp_path / "node.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_ready(proc, internal, tmp_path)
            yield proc, port, internal
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def wait_ready(proc: subprocess.Popen[bytes], internal: int, tmp_path: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "node.log").read_text()
        if readyz(internal) == 200:
            return
        time.sleep(0.05)
    raise AssertionError("node not ready:\n" + (tmp_path / "node.log").read_text())


def readyz(internal: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", internal, timeout=1)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


async def connect_clients(port: int, n: int) -> list[Any]:
    sockets = []
    for _ in range(n):
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/connection/websocket", proxy=None)
        await ws.send(json.dumps({"id": 1, "connect": {}}))
        assert "connect" in json.loads(await ws.recv())
        sockets.append(ws)
    return sockets


async def exit_code(proc: subprocess.Popen[bytes], timeout: float) -> int:
    return await asyncio.to_thread(proc.wait, timeout)


async def close_codes(sockets: list[Any]) -> set[int | None]:
    for ws in sockets:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await ws.recv()
    return {ws.close_code for ws in sockets}


async def test_sigterm_drains_and_exits_0(tmp_path: Path) -> None:
    drain = {"drain": {"readiness_delay": 0.2, "window": 1.0, "timeout": 20}}
    with serve(tmp_path, drain) as (proc, port, _):
        sockets = await connect_clients(port, 5)
        proc.send_signal(signal.SIGTERM)
        assert await exit_code(proc, 20) == 0
        assert await close_codes(sockets) == {3001}
    log = (tmp_path / "node.log").read_text()
    assert "SIGTERM: draining (at most 20s); send it again" in log
    assert "connections drained" in log


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
async def test_a_second_signal_cuts_the_drain_short(tmp_path: Path, second: signal.Signals) -> None:
    # A minute-long drain; the second signal ends it long before (bound: the watchdog's 100 s).
    drain = {"drain": {"readiness_delay": 30, "window": 30, "timeout": 100}}
    with serve(tmp_path, drain) as (proc, port, _):
        sockets = await connect_clients(port, 3)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        proc.send_signal(second)
        assert await exit_code(proc, 60) == 0
        assert await close_codes(sockets) == {3001}
    assert "again: closing what is left now" in (tmp_path / "node.log").read_text()


async def test_the_watchdog_ends_a_drain_that_cannot_finish(tmp_path: Path) -> None:
    # The closes take the 1 s window; leaving the fleet then waits 1.5 s for the
    # frozen broker (its command timeout): past the 1.5 s drain.timeout.
    drain = {"drain": {"readiness_delay": 0, "window": 1.0, "timeout": 1.5}}
    with redis_server() as redis:
        config = {**drain, "broker": {"url": redis.url}}
        with serve(tmp_path, config) as (proc, port, _):
            sockets = await connect_clients(port, 1)
            assert redis.process is not None
            redis.process.send_signal(signal.SIGSTOP)  # frozen: commands never answer
            try:
                proc.send_signal(signal.SIGTERM)
                assert await exit_code(proc, 30) == WATCHDOG_EXIT
            finally:
                redis.process.send_signal(signal.SIGCONT)
            await close_codes(sockets)
    log = (tmp_path / "node.log").read_text()
    assert "drain not finished within drain.timeout (1.5s)" in log
