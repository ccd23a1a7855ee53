"""A fleet of real wsfleet node processes on loopback, sharing one private Redis.

What this harness proves by itself: the documented way to form a fleet,
``wsfleet serve --broker redis://... --port P --internal-port I --name N``
run once per node with the same broker URL, gives nodes that start, answer
``/readyz`` and stop on SIGTERM. The fleet tests then check, through these
processes only (the SDK over WebSocket, ``cent`` over the server API, plain
HTTP for health), that the nodes act as one server.

Each node is a separate OS process started exactly as an operator would:

    <wsfleet> serve --broker <redis url> --port <p> --internal-port <ip>
                    --host 127.0.0.1 --name node-<i> --config <fleet.yaml>

where ``<wsfleet>`` is ``python -m wsfleet`` when the package has a
``__main__`` module, and otherwise the ``wsfleet`` console script installed
next to the running interpreter. The YAML file holds what the test passes
(namespaces, keys) plus ``server.internal_host: 127.0.0.1`` and text logs.

Every process writes stdout and stderr to its own log file; a node that
exits or is not ready in time fails with the end of that log, and the
fleet fixtures add every node's log to a failing test's report. Processes
are always ended: by the context managers, and as a last resort at exit.

Blocking calls (``start_blocking``, ``stop_blocking``) serve sync fixtures;
tests running on the event loop use the async ones, which do the same in a
worker thread so SDK clients on the loop keep running meanwhile.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import http.client
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.redis_servers import node_port

__all__ = [
    "READY_TIMEOUT",
    "Fleet",
    "NodeNotReady",
    "NodeProcess",
    "fleet",
    "running_fleet",
    "wsfleet_command",
]

READY_TIMEOUT = 15.0
"""Seconds a node may take to answer ``/readyz`` with 200 (a bound, not a target)."""

STOP_TIMEOUT = 10.0
"""Seconds a node may take to exit after SIGTERM before it is killed (and the test fails)."""

LOG_TAIL_LINES = 60

_BIND_FAILED = ("address already in use", "errno 98")

_live: weakref.WeakSet[NodeProcess] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    # Only a crash of the test process itself gets here with nodes running.
    for node in list(_live):
        node.kill()


class NodeNotReady(RuntimeError):
    """A node exited or did not become ready; the message ends with its log."""


def wsfleet_command() -> list[str]:
    """How to run the ``wsfleet`` command with this interpreter's installation."""
    if importlib.util.find_spec("wsfleet.__main__") is not None:
        return [sys.executable, "-m", "wsfleet"]
    script = Path(sys.executable).with_name("wsfleet")
    if script.exists():
        return [str(script)]
    found = shutil.which("wsfleet")
    if found is None:
        raise RuntimeError(
            "no way to run wsfleet: no wsfleet.__main__ module and no wsfleet console "
            f"script next to {sys.executable} (install the project: pip install -e .)"
        )
    return [found]


def _node_environment() -> dict[str, str]:
    # WSFLEET_* variables of the developer's shell would change the nodes' settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSFLEET_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def write_config(path: Path, config: Mapping[str, Any] | None) -> None:
    """The fleet's YAML file: ``config`` over loopback internal host and text logs."""
    base: dict[str, Any] = {"server": {"internal_host": "127.0.0.1", "log_format": "text"}}
    path.write_text(yaml.safe_dump(_merge(base, config or {}), sort_keys=False))


class NodeProcess:
    """One ``wsfleet serve`` process; ports are chosen once and kept across restarts."""

    def __init__(self, name: str, broker_url: str, config_path: Path, log_path: Path) -> None:
        self.name = name
        self.broker_url = broker_url
        self.config_path = config_path
        self.log_path = log_path
        self.port = 0
        self.internal_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def __repr__(self) -> str:
        return f"<NodeProcess {self.name} ws:{self.port} internal:{self.internal_port}>"

    # -- addresses ---------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    @property
    def internal_url(self) -> str:
        return f"http://127.0.0.1:{self.internal_port}"

    @property
    def api_url(self) -> str:
        return f"{self.internal_url}/api"

    @property
    def argv(self) -> list[str]:
        return [
            *wsfleet_command(),
            "serve",
            "--broker", self.broker_url,
            "--port", str(self.port),
            "--internal-port", str(self.internal_port),
            "--host", "127.0.0.1",
            "--name", self.name,
            "--config", str(self.config_path),
        ]  # fmt: skip

    # -- running ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        """Start the process (choosing free ports the first time); do not wait for it."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        if not self.port:
            self.port, self.internal_port = node_port(), node_port()
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"---- start #{self.starts}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_node_environment(),
            )
        _live.add(self)

    def probe_blocking(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        """GET ``path`` on the internal port: (status, body); (0, error) if unreachable."""
        conn = http.client.HTTPConnection("127.0.0.1", self.internal_port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        except OSError as exc:
            return 0, f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()

    async def probe(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        return await asyncio.to_thread(self.probe_blocking, path, timeout)

    def wait_ready_blocking(self, timeout: float = READY_TIMEOUT) -> None:
        """Until ``/readyz`` answers 200; NodeNotReady if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        last = (0, "no answer yet")
        while True:
            process = self.process
            if process is None:
                raise NodeNotReady(f"{self.name} was never started")
            code = process.poll()
            if code is not None:
                raise NodeNotReady(
                    f"{self.name} exited with code {code} before it was ready\n{self.log_tail()}"
                )
            last = self.probe_blocking("/readyz", timeout=1.0)
            if last[0] == 200:
                return
            if time.monotonic() > deadline:
                raise NodeNotReady(
                    f"{self.name} not ready within {timeout} s; last /readyz: {last}\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def start_blocking(self, timeout: float = READY_TIMEOUT) -> None:
        """Spawn and wait until ready; new free ports if the first ones were taken meanwhile."""
        first_start = not self.port
        for attempt in range(3):
            self.spawn()
            try:
                self.wait_ready_blocking(timeout)
                return
            except NodeNotReady as exc:
                self.kill()
                taken = any(text in str(exc).lower() for text in _BIND_FAILED)
                if not (first_start and taken and attempt < 2):
                    raise
                self.port = self.internal_port = 0  # a free port was taken: pick others

    async def start(self, timeout: float = READY_TIMEOUT) -> None:
        await asyncio.to_thread(self.start_blocking, timeout)

    def kill(self) -> None:
        """SIGKILL: the node dies at once, without closing anything."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)
        _live.discard(self)

    def terminate_blocking(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait: the node drains and exits; its exit code (None if not running)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise NodeNotReady(
                    f"{self.name} did not exit within {timeout} s of SIGTERM\n{self.log_tail()}"
                ) from None
        _live.discard(self)
        return process.returncode

    async def terminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        return await asyncio.to_thread(self.terminate_blocking, timeout)

    async def restart(self, timeout: float = READY_TIMEOUT) -> None:
        """SIGTERM (if running), then the same command on the same ports, until ready."""
        await self.terminate()
        await self.start(timeout)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"[{self.name}: no log: {exc}]"
        tail = text.splitlines()[-lines:]
        return f"---- {self.name} log ({self.log_path}), last {len(tail)} lines:\n" + "\n".join(
            tail
        )


class Fleet:
    """Nodes ``node-0`` .. ``node-<n-1>`` on one broker URL and one config file."""

    def __init__(
        self, size: int, broker_url: str, workdir: Path, config: Mapping[str, Any] | None
    ) -> None:
        self.broker_url = broker_url
        self.workdir = workdir
        self.config_path = workdir / "fleet.yaml"
        write_config(self.config_path, config)
        self.nodes = [
            NodeProcess(f"node-{i}", broker_url, self.config_path, workdir / f"node-{i}.log")
            for i in range(size)
        ]

    def __getitem__(self, index: int) -> NodeProcess:
        return self.nodes[index]

    def __iter__(self) -> Iterator[NodeProcess]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def start_blocking(self) -> None:
        # Spawned together (the imports dominate start-up), then each awaited.
        for node in self.nodes:
            node.port, node.internal_port = node_port(), node_port()
            node.spawn()
        for node in self.nodes:
            try:
                node.wait_ready_blocking()
            except NodeNotReady as exc:
                if not any(text in str(exc).lower() for text in _BIND_FAILED):
                    raise
                node.kill()
                node.port = node.internal_port = 0
                node.start_blocking()

    def stop_blocking(self) -> None:
        """SIGTERM every node; each one that does not exit cleanly is reported."""
        problems = []
        for node in self.nodes:
            try:
                code = node.terminate_blocking()
            except NodeNotReady as exc:
                problems.append(str(exc))
                continue
            if code not in (None, 0, -signal.SIGKILL):
                problems.append(f"{node.name} exited with code {code}\n{node.log_tail()}")
        if problems:
            raise RuntimeError("fleet did not stop cleanly:\n" + "\n".join(problems))

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill()

    def logs(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(node.log_tail(lines) for node in self.nodes)


@contextlib.contextmanager
def running_fleet(
    size: int, redis_url: str, *, config: Mapping[str, Any] | None = None
) -> Iterator[Fleet]:
    """``size`` ready nodes on ``redis_url``; all stopped (killed if need be) on exit."""
    with tempfile.TemporaryDirectory(prefix="wsfleet-fleet-") as tmp:
        group = Fleet(size, redis_url, Path(tmp), config)
        try:
            group.start_blocking()
            yield group
            group.stop_blocking()
        except BaseException:
            _show_logs(group)
            raise
        finally:
            group.kill_all()


@contextlib.asynccontextmanager
async def fleet(
    size: int, redis_url: str, *, config: Mapping[str, Any] | None = None
) -> AsyncIterator[Fleet]:
    """:func:`running_fleet` for async code: starting and stopping run in a thread."""
    with tempfile.TemporaryDirectory(prefix="wsfleet-fleet-") as tmp:
        group = Fleet(size, redis_url, Path(tmp), config)
        try:
            await asyncio.to_thread(group.start_blocking)
            yield group
            await asyncio.to_thread(group.stop_blocking)
        except BaseException:
            _show_logs(group)
            raise
        finally:
            group.kill_all()


def _show_logs(group: Fleet) -> None:
    # The log files go with the temporary directory: a failing test's captured
    # stderr keeps their end.
    print(group.logs(), file=sys.stderr)
