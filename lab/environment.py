"""One lab run's world: Redis, the nodes, the balancer, the clients, the publisher, the observer.

:class:`Lab` starts the parts in order (a private Redis, the nodes, the
balancer in front of them, the observer) and stops them in reverse, always,
showing the ends of the nodes' and the balancer's logs when something fails.
Scenarios (:mod:`lab.scenarios`) act on it through a few verbs that do what
Kubernetes does to a Deployment: :meth:`Lab.drain_node` (SIGTERM, the
endpoint leaves the balancer, the process exits), :meth:`Lab.kill_node`,
:meth:`Lab.add_node` (a new pod: new process, name and ports, added to the
balancer once ready), and :meth:`Lab.kill_redis` / :meth:`Lab.start_redis`.
Every verb leaves a *mark* (what was done, when) for the report.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import platform
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.api import ServerApi
from lab.balancer import Backend, Balancer
from lab.clients import ClientSpec
from lab.haproxy import HAProxy, HAProxyOptions
from lab.nginx import Nginx, NginxOptions, check_timeouts
from lab.nodes import Fleet, NodeProcess, merge
from lab.observer import Observer
from lab.ports import free_port
from lab.publisher import Publisher, Target
from lab.redis import RedisServer
from lab.workers import ClientWorkers

__all__ = ["BASE_CONFIG", "CHANNEL", "PRESENCE_CHANNEL", "Lab", "LabOptions"]

SECRET = "wsfleet-lab-hmac-secret-of-more-than-32-bytes"
API_KEY = "wsfleet-lab-api-key"
CHANNEL = "feed:lab"
PRESENCE_CHANNEL = "room:lab"

BASE_CONFIG: dict[str, Any] = {
    "api": {"key": API_KEY},
    "auth": {"token_hmac_secret": SECRET},
    "server": {"trusted_proxies": ["127.0.0.1"]},
    "fleet": {"heartbeat_interval": 1.0},
    "drain": {"readiness_delay": 1.0, "window": 5.0, "timeout": 20.0},
    "rebalance": {"interval": 2.0, "rate": 20},
    "channel": {
        "namespaces": [
            {
                "name": "feed",
                "history_size": 1000,
                "history_ttl": 300,
                "allow_subscribe_for_client": True,
            },
            {
                "name": "room",
                "presence": True,
                "allow_subscribe_for_client": True,
                "allow_presence_for_subscriber": True,
            },
        ]
    },
}
"""What every node of a lab run is given (scenario and ``--set`` settings go on top).

Short drain and a fast heartbeat, so that a run takes a minute, not ten.
``server.trusted_proxies`` names the balancer, so nodes see clients'
addresses from ``X-Forwarded-For``.
"""


@dataclass(kw_only=True)
class LabOptions:
    scenario: str = "rolling-restart"
    nodes: int = 3
    clients: int = 300
    rate: float = 20.0
    duration: float = 0.0
    """Seconds of publishing at least; 0: until the scenario is over, plus :attr:`tail`."""
    warmup: float = 2.0
    tail: float = 3.0
    balancer: str = "nginx"
    affinity: bool = False
    keep_draining_backends: bool = False
    """Keep a draining node in the balancer until it exits (see :meth:`Lab.drain_node`)."""
    workers: int = 0
    """Client worker processes; 0: one per 1,500 clients."""
    connect_rate: float = 200.0
    min_reconnect_delay: float = 0.2
    max_reconnect_delay: float = 2.0
    protobuf_every: int = 0
    presence_clients: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    """Every node's settings over :data:`BASE_CONFIG` (the scenario's, then ``--set``)."""
    node_settings: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Per-node overrides by the node's index at the start."""
    out: Path = Path("lab-out")
    settle_timeout: float = 30.0
    ready_timeout: float = 0.0
    """Seconds for every client to subscribe once; 0: from the client count and rate."""

    @property
    def worker_count(self) -> int:
        return self.workers or max(1, -(-self.clients // 1500))

    @property
    def node_config(self) -> dict[str, Any]:
        return merge(BASE_CONFIG, self.settings)

    def setting(self, dotted: str, default: Any = None) -> Any:
        """A node setting by its dotted name, as the nodes are given it."""
        value: Any = self.node_config
        for part in dotted.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return default
            value = value[part]
        return value


class Lab:
    """The running parts of one lab run; use as ``async with Lab(options) as lab``."""

    def __init__(self, options: LabOptions) -> None:
        self.options = options
        # Absolute: nginx, HAProxy and redis-server run in directories of their own.
        self.out = options.out.resolve()
        self.logs = self.out / "logs"
        self.run_id = secrets.token_hex(4)
        self.started_at = time.time()
        self.marks: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {}
        """Anything a scenario measured beyond the records (presence samples, metrics)."""
        (self.logs / "redis").mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(free_port(), self.logs / "redis")
        self.fleet = Fleet(
            options.nodes,
            self.redis.url,
            self.logs,
            options.node_config,
            node_config=options.node_settings,
        )
        self.leaving: list[NodeProcess] = []
        self.balancer = self._make_balancer()
        self.api = ServerApi(API_KEY)
        self.observer = Observer(self._observed)
        self.publisher = Publisher(
            self.api, self.targets, channel=CHANNEL, rate=options.rate, run_id=self.run_id
        )
        self.workers: ClientWorkers | None = None
        self._publishing: asyncio.Task[None] | None = None
        self._stop_publishing = asyncio.Event()
        self.publish_started = 0.0

    # -- parts -------------------------------------------------------------------------------

    def _make_balancer(self) -> Balancer:
        port = free_port()
        prefix = self.logs / self.options.balancer
        ping = float(self.options.setting("client.ping_interval", 25.0))
        if self.options.balancer == "haproxy":
            return HAProxy(
                HAProxyOptions(listen_port=port, prefix=prefix, affinity=self.options.affinity)
            )
        if self.options.balancer != "nginx":
            raise ValueError(f"unknown balancer {self.options.balancer!r}: nginx or haproxy")
        options = NginxOptions(listen_port=port, prefix=prefix, affinity=self.options.affinity)
        check_timeouts(options, ping)
        return Nginx(options)

    def targets(self) -> list[Target]:
        """The member nodes (not those draining): where publishing goes."""
        return [Target(n.name, n.internal_url) for n in self.fleet.nodes if n.running]

    def _observed(self) -> list[Target]:
        nodes = [*self.fleet.nodes, *(n for n in self.leaving if n.running)]
        return [Target(n.name, n.internal_url) for n in nodes]

    def backends(self) -> list[Backend]:
        """The balancer's node set: the members, and the draining nodes if it keeps them."""
        nodes = list(self.fleet.nodes)
        if self.options.keep_draining_backends:
            nodes += [n for n in self.leaving if n.running]
        return [Backend(n.name, n.port, n.internal_port) for n in nodes]

    def mark(self, label: str, *, short: str = "", at: float = 0.0, **data: Any) -> None:
        """Record that ``label`` happened ``at`` (default: now), for the report's timeline."""
        entry = {"t": at or time.time(), "label": label, "short": short or label, **data}
        self.marks.append(entry)
        print(f"[lab {time.time() - self.started_at:7.2f} s] {label}", file=sys.stderr, flush=True)

    # -- start and stop ----------------------------------------------------------------------

    async def __aenter__(self) -> Lab:
        try:
            await asyncio.to_thread(self.redis.start)
            await asyncio.to_thread(self.fleet.start_blocking)
            await self.balancer.start(self.backends())
            self.observer.start()
        except BaseException:
            await self._teardown(failed=True)
            raise
        self.mark(f"{len(self.fleet)} nodes ready behind {self.balancer.name}", short="start")
        return self

    async def __aexit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        await self._teardown(failed=exc is not None)

    async def _teardown(self, *, failed: bool) -> None:
        self._stop_publishing.set()
        if self._publishing is not None:
            await asyncio.gather(self._publishing, return_exceptions=True)
        if self.workers is not None:
            self.workers.kill()
        await self.observer.stop()
        await self.api.close()
        await self.balancer.stop()
        problem = ""
        try:
            await asyncio.to_thread(self.fleet.stop_blocking)
        except RuntimeError as exc:
            problem = str(exc)
        finally:
            self.fleet.kill_all()
            await asyncio.to_thread(self.redis.kill)
        if failed or problem:
            print(self.log_tails(), file=sys.stderr)
        if problem and not failed:
            raise RuntimeError(problem)

    def log_tails(self, lines: int = 40) -> str:
        parts = [self.fleet.logs(lines), self.balancer.log_tail(lines)]
        if self.workers is not None:
            parts.append(self.workers.logs())
        return "\n".join(parts)

    # -- traffic -----------------------------------------------------------------------------

    async def start_clients(self) -> None:
        """Start the SDK clients through the balancer; return once each has subscribed."""
        o = self.options
        spec = ClientSpec(
            url=self.balancer.ws_url,
            secret=SECRET,
            channel=CHANNEL,
            presence_channel=PRESENCE_CHANNEL if o.presence_clients else "",
            presence_clients=o.presence_clients,
            min_reconnect_delay=o.min_reconnect_delay,
            max_reconnect_delay=o.max_reconnect_delay,
            protobuf_every=o.protobuf_every,
        )
        self.workers = ClientWorkers(
            spec,
            total=o.clients,
            workers=o.worker_count,
            connect_rate=o.connect_rate,
            workdir=self.logs,
        )
        await self.workers.start()
        timeout = o.ready_timeout or 30 + 3 * o.clients / o.connect_rate
        await self.workers.wait_ready(timeout)
        self.mark(f"{o.clients} clients subscribed", short="clients in")

    def start_publisher(self) -> None:
        self.publish_started = time.time()
        self._publishing = asyncio.create_task(self.publisher.run(self._stop_publishing))
        self.mark(f"publisher started ({self.options.rate}/s)", short="publishing")

    async def finish(self) -> list[dict[str, Any]]:
        """Publish until the run's duration, stop, let every client catch up; the records."""
        o = self.options
        end = self.publish_started + o.duration if o.duration else 0.0
        await asyncio.sleep(max(o.tail, end - time.time()))
        self._stop_publishing.set()
        if self._publishing is not None:
            await self._publishing
        self.mark(f"publisher stopped at seq {self.publisher.last_acked}", short="stop")
        assert self.workers is not None
        records = await self.workers.stop(
            last_seq=self.publisher.last_acked, settle_timeout=o.settle_timeout
        )
        self.mark("clients stopped", short="end")
        return records

    # -- what Kubernetes does to pods ---------------------------------------------------------

    def _exit_timeout(self) -> float:
        return float(self.options.setting("drain.timeout", 30.0)) + 10.0

    async def drain_node(self, node: NodeProcess) -> int | None:
        """SIGTERM ``node``, take it out of the balancer, wait for its exit; its exit code.

        By default the node leaves the balancer at once, as a pod's endpoint
        does when the pod starts terminating, and an ingress controller follows
        it. With :attr:`LabOptions.keep_draining_backends` it stays in the
        balancer's configuration until it has exited, as with a balancer whose
        server list is fixed or slow to follow (DNS, a cloud load balancer):
        only the balancer's own health check of ``/readyz`` takes it out of
        rotation (HAProxy has one; nginx keeps sending it handshakes, which
        it refuses with 503 once its readiness delay is over).
        """
        clients = self.observer.clients_now().get(node.name, 0)
        at = time.time()
        node.send_sigterm()
        self.fleet.retire(node)
        self.leaving.append(node)
        self.mark(f"SIGTERM {node.name} ({clients} clients)", short=f"SIGTERM {node.name}",
                  at=at, action="sigterm", node=node.name, clients=clients)  # fmt: skip
        keep = self.options.keep_draining_backends
        if not keep:
            await self.balancer.reload(self.backends())
        code = await node.wait_exit(self._exit_timeout())
        self.mark(f"{node.name} exited with code {code}", short=f"{node.name} exit {code}",
                  action="exit", node=node.name, code=code)  # fmt: skip
        if keep:
            await self.balancer.reload(self.backends())
        return code

    async def kill_node(self, node: NodeProcess) -> None:
        """SIGKILL ``node``; its endpoint leaves the balancer."""
        clients = self.observer.clients_now().get(node.name, 0)
        at = time.time()  # before the signal: nothing it causes can come earlier
        await asyncio.to_thread(node.kill)
        self.fleet.retire(node)
        self.mark(f"SIGKILL {node.name} ({clients} clients)", short=f"SIGKILL {node.name}",
                  at=at, action="sigkill", node=node.name, clients=clients)  # fmt: skip
        await self.balancer.reload(self.backends())

    async def add_node(self, override: Mapping[str, Any] | None = None) -> NodeProcess:
        """A new node (process, name, ports), ready, then added to the balancer."""
        node = await self.fleet.add(override)
        await self.balancer.reload(self.backends())
        self.mark(f"{node.name} added", short=f"+{node.name}", action="add", node=node.name)
        return node

    async def kill_redis(self) -> None:
        at = time.time()
        await asyncio.to_thread(self.redis.kill)
        self.mark("Redis SIGKILLed", short="Redis killed", at=at, action="redis-kill")

    async def start_redis(self) -> None:
        await asyncio.to_thread(self.redis.start)
        self.mark("Redis restarted, empty", short="Redis back", action="redis-start")

    async def wait_nodes(self, *, ready: bool, timeout: float = 30.0) -> bool:
        """Until every member's ``/readyz`` is (or is not) 200; whether that happened in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answers = await asyncio.gather(*(n.probe("/readyz", 1.0) for n in self.fleet.nodes))
            if all((code == 200) == ready for code, _ in answers):
                return True
            await asyncio.sleep(0.1)
        return False

    def meta(self) -> dict[str, Any]:
        o = self.options
        return {
            "date": time.strftime("%Y-%m-%d", time.localtime(self.started_at)),
            "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}",
            "command": " ".join(["python -m lab", *sys.argv[1:]]),
            "scenario": o.scenario,
            "nodes": o.nodes,
            "balancer": self.balancer.name,
            "rate": o.rate,
            "workers": o.worker_count,
            "channel": CHANNEL,
            "started_at": self.started_at,
            "ended_at": time.time(),
            "duration_s": round(time.time() - self.started_at, 1),
            "node_settings": o.settings,
            "per_node_settings": {str(k): v for k, v in o.node_settings.items()},
            "min_reconnect_delay": o.min_reconnect_delay,
            "options": {k: str(v) for k, v in dataclasses.asdict(o).items()},
        }
