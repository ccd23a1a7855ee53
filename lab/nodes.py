"""A fleet of real wsfleet node processes on loopback, sharing one broker.

Each node is a separate OS process started exactly as an operator would:

    <wsfleet> serve --broker <redis url> --port <p> --internal-port <ip>
                    --host 127.0.0.1 --name node-<i> --config <fleet.yaml>

where ``<wsfleet>`` is ``python -m wsfleet`` when the package has a
``__main__`` module, and otherwise the ``wsfleet`` console script installed
next to the running interpreter. The YAML file holds what the caller passes
(namespaces, keys, drain settings ...) plus ``server.internal_host: 127.0.0.1``
and text logs; a node given a per-node override gets a file of its own
(``node-<i>.yaml``: the fleet's settings with the override on top).

The node set changes at run time as a Kubernetes Deployment's pods do: a node
is stopped (SIGTERM, it drains and exits) or killed (SIGKILL), and a new one
(a new process, name and ports) is added; :attr:`Fleet.nodes` lists the
current members, :attr:`Fleet.retired` those that left.

Every process writes stdout and stderr to its own log file; a node that
exits or is not ready in time fails with the end of that log. Processes are
always ended: by the context managers, and as a last resort at exit.

Blocking calls (``start_blocking``, ``terminate_blocking``) serve sync code;
code running on an event loop uses the async ones, which do the same in a
worker thread so that the loop keeps running meanwhile.
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

from lab.ports import node_port

__all__ = [
    "READY_TIMEOUT",
    "STOP_TIMEOUT",
    "Fleet",
    "NodeNotReady",
    "NodeProcess",
    "fleet",
    "merge",
    "running_fleet",
    "write_config",
    "wsfleet_command",
]

READY_TIMEOUT = 15.0
"""Seconds a node may take to answer ``/readyz`` with 200 (a bound, not a target)."""

STOP_TIMEOUT = 10.0
"""Seconds a node may take to exit after SIGTERM before it is killed (and that is an error)."""

LOG_TAIL_LINES = 60

_BIND_FAILED = ("address already in use", "errno 98")

_live: weakref.WeakSet[NodeProcess] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    # Only a crash of the controlling process itself gets here with nodes running.
    for node in list(_live):
        node.kill()


class NodeNotReady(RuntimeError):
    """A node exited, did not become ready or did not stop; the message ends with its log."""


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


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, section by section (mappings merge, other values replace)."""
    out = dict(base)
    for key, value in extra.items():
        current = out.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            out[key] = merge(current, value)
        else:
            out[key] = value
    return out


def write_config(path: Path, config: Mapping[str, Any] | None) -> None:
    """A node's YAML file: ``config`` over loopback internal host and text logs."""
    base: dict[str, Any] = {"server": {"internal_host": "127.0.0.1", "log_format": "text"}}
    path.write_text(yaml.safe_dump(merge(base, config or {}), sort_keys=False))


def _bind_failed(exc: BaseException) -> bool:
    return any(text in str(exc).lower() for text in _BIND_FAILED)


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
        self.sigterm_at: float | None = None
        """Wall-clock time (``time.time()``) of the last SIGTERM sent, if any."""

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

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def choose_ports(self) -> None:
        self.port, self.internal_port = node_port(), node_port()

    def spawn(self) -> None:
        """Start the process (choosing free ports the first time); do not wait for it."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        if not self.port:
            self.choose_ports()
        self.starts += 1
        self.sigterm_at = None
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
                if not (first_start and _bind_failed(exc) and attempt < 2):
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

    def send_sigterm(self) -> None:
        """SIGTERM without waiting: the node starts its drain."""
        process = self.process
        if process is not None and process.poll() is None:
            self.sigterm_at = time.time()
            process.send_signal(signal.SIGTERM)

    def wait_exit_blocking(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Until the process exits; its exit code (None if it never ran).

        NodeNotReady, after killing it, if it is still running after ``timeout``.
        """
        process = self.process
        if process is None:
            return None
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise NodeNotReady(
                f"{self.name} did not exit within {timeout} s of SIGTERM\n{self.log_tail()}"
            ) from None
        _live.discard(self)
        return process.returncode

    def terminate_blocking(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait: the node drains and exits; its exit code (None if not running)."""
        self.send_sigterm()
        return self.wait_exit_blocking(timeout)

    async def terminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        return await asyncio.to_thread(self.terminate_blocking, timeout)

    async def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int | None:
        return await asyncio.to_thread(self.wait_exit_blocking, timeout)

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
    """Nodes ``node-0`` .. ``node-<n-1>`` on one broker URL; more may join, any may leave.

    ``config`` is every node's configuration; ``node_config`` maps a node's
    index to an override of it for that node alone (say, a connection cap).
    Nodes added later are numbered on: ``node-<n>``, ``node-<n+1>`` ...
    """

    def __init__(
        self,
        size: int,
        broker_url: str,
        workdir: Path,
        config: Mapping[str, Any] | None,
        *,
        node_config: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> None:
        self.broker_url = broker_url
        self.workdir = workdir
        self.config: dict[str, Any] = dict(config or {})
        self.config_path = workdir / "fleet.yaml"
        write_config(self.config_path, self.config)
        self.nodes: list[NodeProcess] = []
        self.retired: list[NodeProcess] = []
        self._next_index = 0
        overrides = node_config or {}
        for i in range(size):
            self.nodes.append(self.new_node(overrides.get(i)))

    def __getitem__(self, index: int) -> NodeProcess:
        return self.nodes[index]

    def __iter__(self) -> Iterator[NodeProcess]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def new_node(self, override: Mapping[str, Any] | None = None) -> NodeProcess:
        """A new member with the next name, not started and not yet in :attr:`nodes`."""
        name = f"node-{self._next_index}"
        self._next_index += 1
        config_path = self.config_path
        if override:
            config_path = self.workdir / f"{name}.yaml"
            write_config(config_path, merge(self.config, override))
        return NodeProcess(name, self.broker_url, config_path, self.workdir / f"{name}.log")

    def start_blocking(self) -> None:
        """Start every member not running yet: spawned together, then each awaited."""
        waiting = [node for node in self.nodes if not node.running]
        # Spawned together (the imports dominate start-up), then each awaited.
        for node in waiting:
            node.choose_ports()
            node.spawn()
        for node in waiting:
            try:
                node.wait_ready_blocking()
            except NodeNotReady as exc:
                if not _bind_failed(exc):
                    raise
                node.kill()
                node.port = node.internal_port = 0
                node.start_blocking()

    def add_blocking(self, override: Mapping[str, Any] | None = None) -> NodeProcess:
        """A new node (new process, name and ports), started and ready, now a member."""
        node = self.new_node(override)
        self.nodes.append(node)
        try:
            node.start_blocking()
        except BaseException:
            self.retire(node)
            raise
        return node

    async def add(self, override: Mapping[str, Any] | None = None) -> NodeProcess:
        return await asyncio.to_thread(self.add_blocking, override)

    def retire(self, node: NodeProcess) -> None:
        """``node`` is no longer a member (stopped or killed by the caller)."""
        if node in self.nodes:
            self.nodes.remove(node)
            self.retired.append(node)

    def stop_blocking(self) -> None:
        """SIGTERM every node; each one that does not exit cleanly is reported."""
        for node in self.nodes:
            node.send_sigterm()  # all drain at once
        problems = []
        for node in [*self.nodes, *self.retired]:
            try:
                code = node.wait_exit_blocking()
            except NodeNotReady as exc:
                problems.append(str(exc))
                continue
            if code not in (None, 0, -signal.SIGKILL):
                problems.append(f"{node.name} exited with code {code}\n{node.log_tail()}")
        if problems:
            raise RuntimeError("fleet did not stop cleanly:\n" + "\n".join(problems))

    def kill_all(self) -> None:
        for node in [*self.nodes, *self.retired]:
            node.kill()

    def logs(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(node.log_tail(lines) for node in [*self.retired, *self.nodes])


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
