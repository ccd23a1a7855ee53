"""HAProxy in front of the fleet (``--balancer haproxy``): health-checked, optionally sticky.

Like :mod:`lab.nginx`, two halves: :func:`render` (pure: options in,
``haproxy.cfg`` text out) and :class:`HAProxy`, a real ``haproxy -f cfg -db``
process. What HAProxy adds over the nginx setup is an active health check:
each node's ``/readyz`` is polled on its internal port (``option httpchk GET
/readyz``, ``check port <internal port> inter 500ms fall 2 rise 2``), so a
node that drains, is full, or lost Redis leaves the rotation within about a
second, without waiting for its endpoint to be removed.

* ``timeout tunnel`` (one hour) is the idle timeout of an upgraded
  connection; it must stay above the server's ``client.ping_interval``.
* ``retry-on conn-failure empty-response response-timeout 503`` with
  ``option redispatch 1``: a refused handshake is retried on another node.
* Optional cookie stickiness: ``cookie WSFLEETSRV insert indirect nocache``
  (each server's cookie value is its name). The SDKs keep no cookies, so
  their connections are spread round robin all the same.

A reload (a new node set) starts a new process with ``-sf <old pid>``: the old
one stops listening and keeps its connections until they close, or until
``hard-stop-after`` passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import resource
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from lab.balancer import Backend
from lab.nginx import (
    AFFINITY_COOKIE_NAME,
    LAB_GENERATION_PATH,
    PROXY_CONNECT_TIMEOUT,
    PROXY_READ_TIMEOUT,
    WORKER_SHUTDOWN_TIMEOUT,
)
from lab.system import require_program

__all__ = ["HAProxy", "HAProxyOptions", "render"]


@dataclass(frozen=True, kw_only=True)
class HAProxyOptions:
    listen_port: int
    prefix: Path
    backends: tuple[Backend, ...] = ()
    tunnel_timeout: int = PROXY_READ_TIMEOUT
    connect_timeout: int = PROXY_CONNECT_TIMEOUT
    affinity: bool = False
    affinity_cookie: str = AFFINITY_COOKIE_NAME
    hard_stop_after: int = WORKER_SHUTDOWN_TIMEOUT
    check_interval_ms: int = 500
    maxconn: int = 9000
    generation: int = 0


def render(o: HAProxyOptions) -> str:
    """The complete ``haproxy.cfg`` for ``o`` (pure: no I/O)."""
    if not o.backends:
        raise ValueError("haproxy needs at least one backend node")
    lines = [
        "global",
        f"    maxconn {o.maxconn}",
        f"    pidfile {o.prefix / 'haproxy.pid'}",
        f"    hard-stop-after {o.hard_stop_after}s",
        "    log stdout format raw local0 notice",
        "",
        "defaults",
        "    mode http",
        "    log global",
        f"    timeout connect {o.connect_timeout}s",
        "    timeout client 60s",
        "    timeout server 60s",
        f"    timeout tunnel {o.tunnel_timeout}s",
        "    timeout http-request 10s",
        "    timeout check 1s",
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response response-timeout 503",
        "",
        "frontend wsfleet_in",
        f"    bind 127.0.0.1:{o.listen_port}",
        "    option forwardfor",
        f"    http-request return status 200 content-type text/plain "
        f'string "{o.generation}" if {{ path {LAB_GENERATION_PATH} }}',
        "    http-request deny deny_status 404 unless { path /connection/websocket }",
        "    default_backend wsfleet",
        "",
        "backend wsfleet",
        "    balance roundrobin",
        "    option httpchk GET /readyz",
        "    http-check expect status 200",
    ]
    if o.affinity:
        lines.append(f"    cookie {o.affinity_cookie} insert indirect nocache")
    check = f"check port {{port}} inter {o.check_interval_ms}ms fall 2 rise 2"
    for b in o.backends:
        cookie = f" cookie {b.name}" if o.affinity else ""
        lines.append(
            f"    server {b.name} 127.0.0.1:{b.port} {check.format(port=b.internal_port)}{cookie}"
        )
    return "\n".join([*lines, ""])


class HAProxy:
    """Real ``haproxy`` processes: the current one, and old ones finishing after reloads."""

    def __init__(self, options: HAProxyOptions) -> None:
        self.binary = require_program("haproxy")
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY:
            options = replace(options, maxconn=min(options.maxconn, max(100, (hard - 200) // 2)))
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        self.old: list[subprocess.Popen[bytes]] = []

    @property
    def name(self) -> str:
        return "haproxy (affinity cookie)" if self.options.affinity else "haproxy"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.options.listen_port}/connection/websocket"

    @property
    def cfg_path(self) -> Path:
        return self.options.prefix / "haproxy.cfg"

    @property
    def out_path(self) -> Path:
        return self.options.prefix / "haproxy.out"

    def _write(self, backends: Sequence[Backend]) -> None:
        self.options = replace(
            self.options, backends=tuple(backends), generation=self.options.generation + 1
        )
        self.cfg_path.write_text(render(self.options))
        check = subprocess.run(
            [self.binary, "-c", "-f", str(self.cfg_path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused its configuration:\n{check.stdout}{check.stderr}")

    def _spawn(self, previous: subprocess.Popen[bytes] | None) -> None:
        argv = [self.binary, "-f", str(self.cfg_path), "-db"]
        if previous is not None:
            argv += ["-sf", str(previous.pid)]
        with self.out_path.open("ab") as out:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        self._wait_generation(10.0)

    def start_blocking(self, backends: Sequence[Backend]) -> None:
        self.options.prefix.mkdir(parents=True, exist_ok=True)
        self._write(backends)
        self._spawn(None)

    def reload_blocking(self, backends: Sequence[Backend]) -> None:
        """New node set: a new process takes over the port; the old one finishes its connections."""
        self._write(backends)
        previous = self.process
        if previous is not None:
            self.old.append(previous)
        self._spawn(previous)

    def _wait_generation(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        want = str(self.options.generation)
        while True:
            process = self.process
            if process is None or process.poll() is not None:
                raise RuntimeError(f"haproxy exited\n{self.log_tail()}")
            if self._get(LAB_GENERATION_PATH) == want:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not serve generation {want}\n{self.log_tail()}")
            time.sleep(0.05)

    def _get(self, path: str) -> str | None:
        conn = http.client.HTTPConnection("127.0.0.1", self.options.listen_port, timeout=1)
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
        for process in [*self.old, *([self.process] if self.process else [])]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        self.process = None
        self.old.clear()

    async def start(self, backends: Sequence[Backend]) -> None:
        await asyncio.to_thread(self.start_blocking, backends)

    async def reload(self, backends: Sequence[Backend]) -> None:
        await asyncio.to_thread(self.reload_blocking, backends)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_blocking)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            tail = self.out_path.read_text(errors="replace").splitlines()[-lines:]
            return f"---- haproxy log, last {len(tail)} lines:\n" + "\n".join(tail)
        return "[haproxy: no log]"
