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
* Lab only: HAProxy's statistics page at ``/lab/stats`` on the listen port
  (:meth:`HAProxy.servers` reads its CSV): each node's state as the health
  check sees it (``UP``, ``DOWN``; the last check's result and HTTP status)
  and how many connections were sent to it, so a test can see when a draining
  node left the rotation and that nothing was sent to it afterwards.

A reload (a new node set) starts a new process with ``-sf <old pid>``: the old
one stops listening and keeps its connections until they close, or until
``hard-stop-after`` passes. Statistics are the current process's: its counters
start at zero at each reload.
"""

from __future__ import annotations

import asyncio
import csv
import io
import resource
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from lab.balancer import LAB_GENERATION_PATH, Backend, BalancerOptions, BalancerProcess
from lab.nginx import (
    PROXY_CONNECT_TIMEOUT,
    PROXY_READ_TIMEOUT,
    WORKER_SHUTDOWN_TIMEOUT,
)

__all__ = ["LAB_STATS_PATH", "HAProxy", "HAProxyOptions", "ServerState", "parse_stats", "render"]

BACKEND = "wsfleet"
"""The name of the backend section: the nodes."""

LAB_STATS_PATH = "/lab/stats"
"""Lab only: HAProxy's statistics page (``/lab/stats;csv`` for CSV), on the listen port."""


@dataclass(frozen=True, kw_only=True)
class HAProxyOptions(BalancerOptions):
    """Everything :func:`render` needs; ``prefix`` holds the configuration and the pid file."""

    backends: tuple[Backend, ...] = ()
    tunnel_timeout: int = PROXY_READ_TIMEOUT
    connect_timeout: int = PROXY_CONNECT_TIMEOUT
    hard_stop_after: int = WORKER_SHUTDOWN_TIMEOUT
    check_interval_ms: int = 500
    maxconn: int = 9000


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
        "    stats enable",
        f"    stats uri {LAB_STATS_PATH}",
        f"    http-request return status 200 content-type text/plain "
        f'string "{o.generation}" if {{ path {LAB_GENERATION_PATH} }}',
        "    http-request deny deny_status 404 "
        f"unless {{ path /connection/websocket }} || {{ path_beg {LAB_STATS_PATH} }}",
        f"    default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
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


class ServerState(NamedTuple):
    """One node as HAProxy's statistics show it (a row of its CSV)."""

    name: str
    status: str
    """``UP``, ``DOWN``, or between them (``UP 1/2``: one more failed check to ``DOWN``)."""
    check_status: str
    """The last health check's result: ``L7OK``, ``L7STS`` (an unexpected HTTP status) ..."""
    check_code: int
    """The HTTP status the last health check got (0 if none)."""
    sessions: int
    """Connections this process has sent the node so far (``stot``), refused ones included."""
    redispatches: int
    """Handshakes this process sent the node and then retried on another (``wredis``)."""


def parse_stats(csv_text: str, backend: str = BACKEND) -> dict[str, ServerState]:
    """The servers of ``backend`` in HAProxy's statistics CSV (``# pxname,svname,...``)."""
    reader = csv.DictReader(io.StringIO(csv_text.removeprefix("# ")))
    servers = {}
    for row in reader:
        if row["pxname"] != backend or row["svname"] in ("FRONTEND", "BACKEND"):
            continue
        servers[row["svname"]] = ServerState(
            name=row["svname"],
            status=row["status"],
            check_status=row["check_status"],
            check_code=int(row["check_code"] or 0),
            sessions=int(row["stot"] or 0),
            redispatches=int(row["wredis"] or 0),
        )
    return servers


class HAProxy(BalancerProcess[HAProxyOptions]):
    """Real ``haproxy`` processes: the current one, and old ones finishing after reloads."""

    program = "haproxy"

    def __init__(self, options: HAProxyOptions) -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY:
            options = replace(options, maxconn=min(options.maxconn, max(100, (hard - 200) // 2)))
        super().__init__(options)
        self.old: list[subprocess.Popen[bytes]] = []
        """Processes of earlier configurations, still serving the connections they hold."""

    @property
    def cfg_path(self) -> Path:
        return self.prefix / "haproxy.cfg"

    def _processes(self) -> list[subprocess.Popen[bytes]]:
        return [*self.old, *super()._processes()]

    def _write(self, backends: Sequence[Backend]) -> None:
        self.options = replace(
            self.options, backends=tuple(backends), generation=self.options.generation + 1
        )
        self.cfg_path.write_text(render(self.options))
        self._check_config([self.binary, "-c", "-f", str(self.cfg_path)])

    def _argv(self, previous: subprocess.Popen[bytes] | None) -> list[str]:
        argv = [self.binary, "-f", str(self.cfg_path), "-db"]
        return [*argv, "-sf", str(previous.pid)] if previous is not None else argv

    def start_blocking(self, backends: Sequence[Backend], timeout: float = 10.0) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        self._write(backends)
        self._spawn(self._argv(None))
        self._wait_generation(timeout)

    def reload_blocking(self, backends: Sequence[Backend], timeout: float = 10.0) -> None:
        """New node set: a new process takes over the port; the old one finishes its connections."""
        self._write(backends)
        previous = self.process
        if previous is not None:
            self.old.append(previous)
        self._spawn(self._argv(previous))
        self._wait_generation(timeout)

    def stop_blocking(self) -> None:
        super().stop_blocking()
        self.old.clear()

    def servers_blocking(self) -> dict[str, ServerState]:
        """Every node of the current configuration as HAProxy sees it now (empty if no answer)."""
        text = self._get(f"{LAB_STATS_PATH};csv")
        return parse_stats(text) if text else {}

    async def servers(self) -> dict[str, ServerState]:
        return await asyncio.to_thread(self.servers_blocking)
