"""What the lab asks of a load balancer in front of the fleet, whichever it is.

A balancer is started with the nodes (:class:`Backend`) it sends clients to,
reloaded with a new node set when nodes join or leave (as an ingress
controller follows a Service's endpoints), and stopped. The implementations
are real programs: :mod:`lab.nginx` (the default) and :mod:`lab.haproxy`.

:class:`BalancerProcess` is what running them has in common, given options
that extend :class:`BalancerOptions`: the process (or processes) of the
program, the wait until a configuration is in force (each configuration has a
generation number, which the balancer serves at :data:`LAB_GENERATION_PATH` on
its listen port), the stop, the logs, and the async verbs of
:class:`Balancer`. Each module keeps what is its program's own: its
configuration, how it checks one, how it starts and how it reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Generic, NamedTuple, Protocol, TypeVar

from lab.chart import SHIPPED
from lab.system import require_program

__all__ = [
    "AFFINITY_COOKIE_NAME",
    "LAB_GENERATION_PATH",
    "Backend",
    "Balancer",
    "BalancerOptions",
    "BalancerProcess",
    "terminate",
]

LAB_GENERATION_PATH = "/lab/generation"
"""Lab only: answers the config's generation, so a reload can be seen to be in force."""

AFFINITY_COOKIE_NAME = SHIPPED.affinity_cookie
"""The affinity cookie's name, the Helm chart's ``routing.affinity.cookieName``
(ingress-nginx: ``affinity: cookie``, ``session-cookie-name``; Traefik: sticky cookie)."""


class Backend(NamedTuple):
    """One node as a balancer sees it: public port for clients, internal port for checks."""

    name: str
    port: int
    internal_port: int


class Balancer(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def ws_url(self) -> str: ...

    async def start(self, backends: Sequence[Backend]) -> None: ...

    async def reload(self, backends: Sequence[Backend]) -> None: ...

    async def stop(self) -> None: ...

    def log_tail(self, lines: int = 40) -> str: ...


@dataclass(frozen=True, kw_only=True)
class BalancerOptions:
    """What every balancer's options hold (each program's options add their own)."""

    listen_port: int
    prefix: Path
    """Private directory: configuration, pid file, logs."""
    affinity: bool = False
    """Cookie affinity: a cookie names the node a client was sent to."""
    affinity_cookie: str = AFFINITY_COOKIE_NAME
    generation: int = 0
    """The configuration's number, served at :data:`LAB_GENERATION_PATH`."""


OptionsT = TypeVar("OptionsT", bound=BalancerOptions)


def terminate(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM ``process`` if it runs, wait for it, SIGKILL it if it takes longer."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


class BalancerProcess(ABC, Generic[OptionsT]):
    """A real balancer program run with a private prefix directory (see the module)."""

    program: ClassVar[str]
    """The program's name: how it is found on the system, and how logs name it."""

    def __init__(self, options: OptionsT) -> None:
        self.binary = require_program(self.program)
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        """The process serving the current configuration."""

    @abstractmethod
    def start_blocking(self, backends: Sequence[Backend], timeout: float = 10.0) -> None:
        """Start with ``backends``; return once the configuration is in force."""

    @abstractmethod
    def reload_blocking(self, backends: Sequence[Backend], timeout: float = 10.0) -> None:
        """New node set: return once the new configuration is in force."""

    @property
    def name(self) -> str:
        return f"{self.program} (affinity cookie)" if self.options.affinity else self.program

    @property
    def port(self) -> int:
        return self.options.listen_port

    @property
    def prefix(self) -> Path:
        return self.options.prefix

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    @property
    def out_path(self) -> Path:
        """Where the program's stdout and stderr go."""
        return self.prefix / f"{self.program}.out"

    def _log_paths(self) -> list[Path]:
        """The files :meth:`log_tail` shows the ends of."""
        return [self.out_path]

    def _processes(self) -> list[subprocess.Popen[bytes]]:
        """Every process :meth:`stop_blocking` ends."""
        return [self.process] if self.process is not None else []

    def _check_config(self, argv: list[str]) -> None:
        """Run the configuration test ``argv``; RuntimeError with its output if it fails."""
        test = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if test.returncode != 0:
            raise RuntimeError(
                f"{self.program} refused its configuration:\n{test.stdout}{test.stderr}"
            )

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        """Start ``argv`` as the current process, its output appended to :attr:`out_path`."""
        with self.out_path.open("ab") as out:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        return self.process

    def _running(self) -> subprocess.Popen[bytes]:
        process = self.process
        if process is None or process.poll() is not None:
            raise RuntimeError(f"{self.program} is not running\n{self.log_tail()}")
        return process

    def _wait_generation(self, timeout: float) -> None:
        """Until the listen port serves the current configuration's generation."""
        deadline = time.monotonic() + timeout
        want = str(self.options.generation)
        while True:
            self._running()
            if self._get(LAB_GENERATION_PATH) == want:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.program} did not serve configuration {want} within {timeout} s\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def _get(self, path: str) -> str | None:
        """The body of ``GET path`` on the listen port if it answers 200; None otherwise."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read().decode()
            return body if response.status == 200 else None
        except OSError:
            return None
        finally:
            conn.close()

    def stop_blocking(self) -> None:
        """SIGTERM every process (SIGKILL if one lingers): every connection through it closes."""
        for process in self._processes():
            terminate(process)
        self.process = None

    async def start(self, backends: Sequence[Backend]) -> None:
        await asyncio.to_thread(self.start_blocking, backends)

    async def reload(self, backends: Sequence[Backend]) -> None:
        await asyncio.to_thread(self.reload_blocking, backends)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_blocking)

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in self._log_paths():
            with contextlib.suppress(OSError):
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(
                    f"---- {self.program} {path.name}, last {len(tail)} lines:\n" + "\n".join(tail)
                )
        return "\n".join(parts) or f"[{self.program}: no log]"
