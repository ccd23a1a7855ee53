"""nginx in front of the fleet, configured as a Kubernetes ingress for wsfleet would be.

Two halves. :func:`render` is pure: :class:`NginxOptions` in, the text of an
``nginx.conf`` out, so the same values can be rendered elsewhere (the
Kubernetes Ingress annotations). :class:`Nginx` runs a real ``nginx`` master
process as the current user with a private prefix directory
(``nginx -p DIR -c nginx.conf -g "daemon off;"``; pid file, logs and temp
files inside DIR), and reloads it (SIGHUP) when the node set changes, as the
ingress controller does when a Service's endpoints change.

What the configuration does, and why:

* WebSocket through HTTP/1.1: ``proxy_http_version 1.1`` and the ``Upgrade``
  and ``Connection`` headers passed on (``map $http_upgrade
  $connection_upgrade``, as ingress-nginx does).
* The values come from the Helm chart's ``values.yaml`` (:mod:`lab.chart`), the
  same ones its NGINX Ingress annotations are rendered from.
* Timeouts: ``proxy_read_timeout`` and ``proxy_send_timeout`` (one hour by
  default) are how long a proxied connection may stay silent; they must stay
  above the server's ``client.ping_interval``, which keeps every connection
  talking (:func:`check_timeouts`).
* ``proxy_next_upstream error timeout http_503``: a node that refuses a
  handshake with 503 (at its connection cap, draining, over its connection
  rate) makes nginx try another node, so the client never sees the refusal.
  Servers are listed with ``max_fails=0``, as ingress-nginx does by default:
  a refusal is not taken as the node being down.
* ``X-Forwarded-For $proxy_add_x_forwarded_for``: the node sees the client's
  address (with ``server.trusted_proxies`` naming nginx).
* Optional cookie affinity, done the way ingress-nginx does it: a cookie (the
  chart's ``routing.affinity.cookieName``, ``WSFLEETSRV``) names the chosen
  node, here as the key of a consistent hash over the nodes: a request with
  the cookie goes where its key hashes,
  and is answered with the same cookie. The SDKs keep no cookies, so a
  request without one gets a fresh key (``$request_id``): such clients
  spread over the nodes exactly as without affinity. wsfleet itself needs
  no stickiness (any node can resume any client); affinity is there to show
  that it does no harm.
"""

from __future__ import annotations

import getpass
import os
import resource
import signal
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from lab.balancer import (
    AFFINITY_COOKIE_NAME,
    LAB_GENERATION_PATH,
    Backend,
    BalancerOptions,
    BalancerProcess,
)
from lab.chart import SHIPPED

__all__ = [
    "AFFINITY_COOKIE_NAME",
    "PROXY_NEXT_UPSTREAM",
    "PROXY_READ_TIMEOUT",
    "PROXY_SEND_TIMEOUT",
    "Nginx",
    "NginxOptions",
    "check_timeouts",
    "render",
]

# -- defaults: the Helm chart's, named after the ingress-nginx annotation carrying each --
# (nginx.ingress.kubernetes.io/<annotation>, rendered by the chart's Ingress from
# routing.nginx in deploy/helm/wsfleet/values.yaml, read by lab.chart; so the lab
# runs the settings users deploy. worker-shutdown-timeout is a ConfigMap key of the
# controller, not the chart's: it stays here.)

PROXY_READ_TIMEOUT = SHIPPED.proxy_read_timeout
"""Seconds; annotation ``proxy-read-timeout``. Above every ping interval of the server."""

PROXY_SEND_TIMEOUT = SHIPPED.proxy_send_timeout
"""Seconds; annotation ``proxy-send-timeout``."""

PROXY_CONNECT_TIMEOUT = SHIPPED.proxy_connect_timeout
"""Seconds; annotation ``proxy-connect-timeout``."""

PROXY_NEXT_UPSTREAM = SHIPPED.next_upstream
"""Annotation ``proxy-next-upstream``: a refusing (503) or unreachable node is skipped."""

PROXY_NEXT_UPSTREAM_TRIES = SHIPPED.next_upstream_tries
"""Annotation ``proxy-next-upstream-tries``."""

WORKER_SHUTDOWN_TIMEOUT = 300
"""Seconds; ConfigMap key ``worker-shutdown-timeout`` (ingress-nginx's default is 240 s).

After a reload, the old worker processes keep the connections they hold
(WebSockets included) and exit when the last one closes, or, at the latest,
this long after the reload, closing whatever is still open at once: every
client still on them reconnects at the same moment and recovers from history.
So the value is a trade: long enough that, in the lab, the nodes' own drains
and rebalancing move connections first (a lab run is a minute or two), short
enough that old workers (their memory) do not linger for hours. In
production keep it above ``client.max_connection_lifetime`` so that
connections leave old workers on their own, jittered, before it fires.
"""


@dataclass(frozen=True, kw_only=True)
class NginxOptions(BalancerOptions):
    """Everything :func:`render` needs; the defaults are the module's constants.

    ``prefix`` holds the pid file, the error and access logs, temporary files.
    """

    proxy_read_timeout: int = PROXY_READ_TIMEOUT
    proxy_send_timeout: int = PROXY_SEND_TIMEOUT
    proxy_connect_timeout: int = PROXY_CONNECT_TIMEOUT
    next_upstream: str = PROXY_NEXT_UPSTREAM
    next_upstream_tries: int = PROXY_NEXT_UPSTREAM_TRIES
    worker_shutdown_timeout: int = WORKER_SHUTDOWN_TIMEOUT
    worker_processes: int = 1
    worker_connections: int = 16384
    worker_rlimit_nofile: int = 0
    """0: leave the limit as inherited."""
    user: str = ""
    """The ``user`` directive (only meaningful, and only rendered, when running as root)."""
    upstreams: tuple[str, ...] = ()
    """The nodes' public addresses, ``host:port``."""


def check_timeouts(options: NginxOptions, ping_interval: float) -> None:
    """ValueError unless nginx's idle timeouts exceed the server's ping interval."""
    for name in ("proxy_read_timeout", "proxy_send_timeout"):
        value = getattr(options, name)
        if value <= ping_interval:
            raise ValueError(
                f"nginx {name} {value}s must exceed the server's client.ping_interval "
                f"{ping_interval}s, or idle connections are cut by the proxy"
            )


def render(options: NginxOptions) -> str:
    """The complete ``nginx.conf`` for ``options`` (pure: no I/O)."""
    if not options.upstreams:
        raise ValueError("nginx needs at least one upstream node")
    return "\n".join(
        [
            *_main_context(options),
            "events {",
            f"    worker_connections {options.worker_connections};",
            "}",
            "",
            "http {",
            *_indent(_http_context(options)),
            "}",
            "",
        ]
    )


def _indent(lines: list[str]) -> list[str]:
    return [f"    {line}" if line else "" for line in lines]


def _main_context(o: NginxOptions) -> list[str]:
    lines = []
    if o.user:
        lines.append(f"user {o.user};")
    lines += [
        f"worker_processes {o.worker_processes};",
        f"pid {o.prefix / 'nginx.pid'};",
        f"error_log {o.prefix / 'error.log'} notice;",
        f"worker_shutdown_timeout {o.worker_shutdown_timeout}s;",
    ]
    if o.worker_rlimit_nofile:
        lines.append(f"worker_rlimit_nofile {o.worker_rlimit_nofile};")
    return [*lines, ""]


def _http_context(o: NginxOptions) -> list[str]:
    temp = o.prefix / "temp"
    lines = [
        f"client_body_temp_path {temp / 'body'};",
        f"proxy_temp_path {temp / 'proxy'};",
        f"fastcgi_temp_path {temp / 'fastcgi'};",
        f"uwsgi_temp_path {temp / 'uwsgi'};",
        f"scgi_temp_path {temp / 'scgi'};",
        "",
        "log_format wsfleet '$remote_addr [$time_iso8601] \"$request\" $status '",
        "                   'upstream=$upstream_addr upstream_status=\"$upstream_status\" '",
        "                   'time=$request_time';",
        f"access_log {o.prefix / 'access.log'} wsfleet;",
        "",
        "# Connection: upgrade only when the client asked for an upgrade.",
        "map $http_upgrade $connection_upgrade {",
        "    default upgrade;",
        "    ''      close;",
        "}",
        "",
    ]
    if o.affinity:
        lines += [
            f"# Affinity: the {o.affinity_cookie} cookie is the hash key that names the node.",
            "# Without it (the SDKs keep no cookies) the key is new for every request,",
            "# so cookie-less clients spread over the nodes as without affinity.",
            f"map $cookie_{o.affinity_cookie} $wsfleet_affinity_key {{",
            "    ''      $request_id;",
            f"    default $cookie_{o.affinity_cookie};",
            "}",
            "",
        ]
    lines += _upstream(o)
    lines += ["", *_server(o)]
    return lines


def _upstream(o: NginxOptions) -> list[str]:
    lines = ["upstream wsfleet {", "    zone wsfleet 256k;"]
    if o.affinity:
        lines.append("    hash $wsfleet_affinity_key consistent;")
    # max_fails=0: a 503 (a full or draining node) is a reason to try another
    # node, not to take this one out of rotation (ingress-nginx's default too).
    lines += [f"    server {address} max_fails=0;" for address in o.upstreams]
    return [*lines, "}"]


def _server(o: NginxOptions) -> list[str]:
    lines = [
        "server {",
        f"    listen 127.0.0.1:{o.listen_port};",
        "",
        "    location = /connection/websocket {",
        "        proxy_pass http://wsfleet;",
        "        proxy_http_version 1.1;",
        "        proxy_set_header Upgrade $http_upgrade;",
        "        proxy_set_header Connection $connection_upgrade;",
        "        proxy_set_header Host $host;",
        "        proxy_set_header X-Real-IP $remote_addr;",
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "        proxy_set_header X-Forwarded-Proto $scheme;",
        "        proxy_buffering off;",
        f"        proxy_connect_timeout {o.proxy_connect_timeout}s;",
        f"        proxy_read_timeout {o.proxy_read_timeout}s;",
        f"        proxy_send_timeout {o.proxy_send_timeout}s;",
        f"        proxy_next_upstream {o.next_upstream};",
        f"        proxy_next_upstream_tries {o.next_upstream_tries};",
    ]
    if o.affinity:
        lines.append(
            f'        add_header Set-Cookie "{o.affinity_cookie}=$wsfleet_affinity_key; '
            'Path=/; HttpOnly" always;'
        )
    lines += [
        "    }",
        "",
        f"    location = {LAB_GENERATION_PATH} {{",
        "        default_type text/plain;",
        f'        return 200 "{o.generation}";',
        "    }",
        "",
        "    location / {",
        "        return 404;",
        "    }",
        "}",
    ]
    return lines


# -- running it ------------------------------------------------------------------------


class Nginx(BalancerProcess[NginxOptions]):
    """A real nginx master process with a private prefix; reloadable with a new node set.

    A reload (SIGHUP) starts new worker processes with the new configuration;
    the old ones stop accepting and keep serving the connections they hold
    until those close or ``worker_shutdown_timeout`` passes. Note that a reload
    in a real ingress-nginx may drop WebSockets (it, too, ends with the old
    workers' shutdown timeout); in the lab, existing connections stay on the
    old workers and leave only when their node closes them. Stopping is nginx's
    fast shutdown (SIGTERM): every connection through it is closed.
    """

    program = "nginx"

    def __init__(self, options: NginxOptions) -> None:
        if os.geteuid() == 0 and not options.user:
            options = replace(options, user=getpass.getuser())
        if not options.worker_rlimit_nofile:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            if hard != resource.RLIM_INFINITY:
                options = replace(options, worker_rlimit_nofile=hard)
        super().__init__(options)

    @property
    def conf_path(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    def _log_paths(self) -> list[Path]:
        return [self.error_log, self.out_path]

    def _write(self) -> None:
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.prefix / "temp" / sub).mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(render(self.options))
        self._check_config([*self._argv(), "-t"])

    def _argv(self) -> list[str]:
        return [
            self.binary,
            "-p", str(self.prefix),
            "-c", str(self.conf_path),
            "-e", str(self.error_log),
            "-g", "daemon off;",
        ]  # fmt: skip

    def _set_backends(self, backends: Sequence[Backend]) -> None:
        upstreams = tuple(f"127.0.0.1:{b.port}" for b in backends)
        self.options = replace(self.options, upstreams=upstreams)

    def start_blocking(self, backends: Sequence[Backend], timeout: float = 10.0) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        self._set_backends(backends)
        self._write()
        self._spawn(self._argv())
        self._wait_generation(timeout)

    def reload_blocking(self, backends: Sequence[Backend], timeout: float = 10.0) -> None:
        """New node set: rewrite the configuration, SIGHUP, wait until it is in force."""
        self._set_backends(backends)
        self.options = replace(self.options, generation=self.options.generation + 1)
        self._write()
        self._running().send_signal(signal.SIGHUP)
        self._wait_generation(timeout)
