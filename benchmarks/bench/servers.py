"""Server processes under test: wsfleet nodes and peer servers, started the same way.

Every server is a child process pinned to the server CPU, with a raised descriptor
limit, its output in a log file, and a readiness check; :class:`Target` knows how to
start one kind (several nodes sharing a private Redis where the kind can) and how to
publish to it over HTTP.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.bench.procstat import pin, raise_nofile
from benchmarks.bench.protocols import PROTOCOLS
from benchmarks.peers.spec import PeerSpec
from lab.nodes import merge, wsfleet_command
from lab.ports import node_port

__all__ = ["PeerTarget", "ServerProcess", "Target", "WsfleetTarget"]

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0

WSFLEET_CONFIG: dict[str, Any] = {
    "server": {"internal_host": "127.0.0.1", "log_format": "text", "log_level": "warning"},
    "auth": {"allow_anonymous_connect_without_token": True},
    "api": {"insecure": True},
    "channel": {"without_namespace": {"allow_subscribe_for_anonymous": True}},
    # Two nodes of a benchmark are placed evenly by the load generator; shedding would
    # only move clients around in the middle of a measurement.
    "rebalance": {"mode": "off"},
    # A benchmark stops a node after its clients are gone: no need to pace a drain.
    "drain": {"readiness_delay": 0, "window": 1, "timeout": 10},
}
"""Anonymous clients, an open API on loopback: what a benchmark needs, nothing more."""


@dataclass
class ServerProcess:
    """One running server; ``ready`` is (method, url, body) answered 200 when it serves."""

    name: str
    argv: list[str]
    ws_url: str
    publish_url: str
    ready: tuple[str, str, bytes]
    log: Path
    port: int = 0
    internal_port: int = 0
    """The internal listener's port, where the server has one (wsfleet)."""
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, cpus: set[int] | None) -> None:
        def child() -> None:
            pin(cpus)
            raise_nofile()

        env = {k: v for k, v in os.environ.items() if not k.startswith("WSFLEET_")}
        env.update(self.env)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=child
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        method, url, body = self.ready
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                break
            if _status(method, url, body) == 200:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"{self.name} did not become ready; the end of {self.log}:\n{self.tail()}"
        )

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT`."""
        if self.process is None:
            return
        self.signal(signal.SIGTERM)
        if self.wait(STOP_TIMEOUT) is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _status(method: str, url: str, body: bytes) -> int:
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        conn.request(
            method, "/" + path, body=body or None, headers={"Content-Type": "application/json"}
        )
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


class Target:
    """One kind of server the load generator can drive."""

    name: str
    protocol: str
    two_node: bool
    needs_redis = False
    """Run with a private Redis even as a single node (its production configuration)."""

    def servers(self, workdir: Path, *, nodes: int, redis_url: str | None) -> list[ServerProcess]:
        """Processes (not started) for ``nodes`` nodes; more than one needs ``redis_url``."""
        raise NotImplementedError

    def publish_body(self, messages: Sequence[tuple[str, bytes]]) -> bytes:
        """An HTTP body publishing ``(channel, JSON data)`` pairs in order."""
        raise NotImplementedError

    def ws_url(self, port: int) -> str:
        return f"ws://127.0.0.1:{port}{PROTOCOLS[self.protocol].path}"


class WsfleetTarget(Target):
    name = "wsfleet"
    protocol = "wsfleet"
    two_node = True

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = merge(WSFLEET_CONFIG, config or {})

    def servers(self, workdir: Path, *, nodes: int, redis_url: str | None) -> list[ServerProcess]:
        path = workdir / "wsfleet.yaml"
        path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        out = []
        for n in range(nodes):
            port, internal = node_port(), node_port()
            argv = [
                *wsfleet_command(), "serve", "--config", str(path),
                "--host", "127.0.0.1", "--port", str(port), "--internal-port", str(internal),
                "--name", f"bench-{n}", "--broker", redis_url or "memory://",
            ]  # fmt: skip
            api = f"http://127.0.0.1:{internal}"
            out.append(
                ServerProcess(
                    name=f"wsfleet-{n}",
                    argv=argv,
                    ws_url=self.ws_url(port),
                    publish_url=f"{api}/api/batch",
                    ready=("GET", f"{api}/readyz", b""),
                    log=workdir / f"wsfleet-{n}.log",
                    port=port,
                    internal_port=internal,
                )
            )
        return out

    def publish_body(self, messages: Sequence[tuple[str, bytes]]) -> bytes:
        commands = b",".join(
            b'{"publish":{"channel":%s,"data":%s}}' % (json.dumps(c).encode(), d)
            for c, d in messages
        )
        return b'{"commands":[' + commands + b"]}"


class PeerTarget(Target):
    """A peer server following benchmarks/peers' contract."""

    def __init__(self, spec: PeerSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.protocol = spec.protocol
        self.two_node = spec.two_node
        self.needs_redis = spec.always_redis

    def servers(self, workdir: Path, *, nodes: int, redis_url: str | None) -> list[ServerProcess]:
        if nodes > 1 and not self.two_node:
            raise ValueError(f"{self.name} has no multi-node mode")
        out = []
        for n in range(nodes):
            port = node_port()
            argv = [*self.spec.command, "--host", "127.0.0.1", "--port", str(port)]
            publish_port = port
            if self.spec.publish_port:
                publish_port = node_port()
                argv += ["--publish-port", str(publish_port)]
            if redis_url:
                argv += ["--redis", redis_url]
            publish = f"http://127.0.0.1:{publish_port}/publish"
            out.append(
                ServerProcess(
                    name=f"{self.name}-{n}",
                    argv=argv,
                    ws_url=self.ws_url(port),
                    publish_url=publish,
                    ready=("POST", publish, b"[]"),
                    log=workdir / f"{self.name}-{n}.log",
                    port=port,
                )
            )
        return out

    def publish_body(self, messages: Sequence[tuple[str, bytes]]) -> bytes:
        items = b",".join(
            b'{"channel":%s,"data":%s}' % (json.dumps(c).encode(), d) for c, d in messages
        )
        return b"[" + items + b"]"
