"""Redis broker URLs: parsing them, and building the redis-py client they name.

Four schemes, one per deployment shape::

    redis://[user:password@]host:port/db           one server
    rediss://[user:password@]host:port/db          one server over TLS
    redis+sentinel://[user:password@]h1:26379,h2:26379/mymaster?db=0
                                                   a master found through Sentinel;
                                                   the path is the service name
    redis+cluster://[user:password@]h1:7000,h2:7001  Redis Cluster; the hosts are
                                                   seed nodes, the rest is discovered

``rediss+sentinel://`` and ``rediss+cluster://`` add TLS to the last two. This module
knows nothing about channels or keys; it only turns text into a connected client
whose timeouts make every failure surface quickly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

__all__ = ["RedisTarget", "make_client", "parse_redis_url"]

Mode = Literal["standalone", "sentinel", "cluster"]

_SCHEMES: dict[str, tuple[Mode, bool]] = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisTarget:
    """Where the broker's Redis is, parsed from a URL.

    hosts: (host, port) pairs: the server, the sentinels, or the cluster seeds.
    db: database number; always 0 in cluster mode (Cluster has only db 0).
    service_name: the Sentinel master's name; empty unless mode is "sentinel".
    """

    mode: Mode
    hosts: tuple[tuple[str, int], ...]
    tls: bool = False
    db: int = 0
    username: str | None = None
    password: str | None = None
    service_name: str = ""
    options: dict[str, str] = field(default_factory=dict)


def _split_hosts(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts: list[tuple[str, int]] = []
    for part in netloc.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):  # [ipv6]:port
            host, _, rest = part[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else default_port
        elif part.count(":") == 1:
            host, _, port_text = part.partition(":")
            port = int(port_text) if port_text else default_port
        else:
            host, port = part, default_port
        hosts.append((host or "localhost", port))
    return tuple(hosts) or (("localhost", default_port),)


def parse_redis_url(url: str) -> RedisTarget:
    """Parse a broker URL; raises ValueError (the caller's fault) when it is malformed."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ValueError(
            f"unsupported redis URL {url!r}: expected redis://, rediss://, "
            "redis+sentinel:// or redis+cluster://"
        )
    mode, tls = _SCHEMES[scheme.lower()]
    # urlsplit cannot take a comma-separated host list as a netloc, so the
    # hosts and credentials are split off by hand and urlsplit reads the rest.
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, parts = rest[:cut], urlsplit("x://h" + rest[cut:])
    username: str | None = None
    password: str | None = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user_text, colon, pass_text = userinfo.partition(":")
        if colon:
            username, password = unquote(user_text) or None, unquote(pass_text)
        else:
            # redis://secret@host: a bare userinfo is the password (AUTH <password>).
            password = unquote(user_text)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    path = unquote(parts.path.strip("/"))
    try:
        hosts = _split_hosts(netloc, 26379 if mode == "sentinel" else 6379)
        db = int(query.pop("db", "0"))
        service_name = ""
        if mode == "sentinel":
            if not path:
                raise ValueError("a redis+sentinel:// URL names the master in its path")
            service_name = path
        elif mode == "standalone":
            if path:
                db = int(path)
            if len(hosts) > 1:
                raise ValueError("redis:// takes one host; use redis+cluster:// for several")
        elif path or db:
            raise ValueError("Redis Cluster has only database 0")
    except ValueError as exc:
        raise ValueError(f"bad redis URL {url!r}: {exc}") from None
    return RedisTarget(
        mode=mode,
        hosts=hosts,
        tls=tls,
        db=db,
        username=username,
        password=password,
        service_name=service_name,
        options=query,
    )


def make_client(
    target: RedisTarget,
    *,
    socket_timeout: float = 1.5,
    connect_timeout: float = 1.0,
    max_connections: int = 64,
    client_name: str | None = None,
) -> Redis | RedisCluster:
    """Build the command client for ``target``; nothing is connected yet.

    socket_timeout: seconds a command may wait for its reply (default 1.5).
    connect_timeout: seconds to establish a connection (default 1.0).
    max_connections: commands in flight at once per server (default 64).
    client_name: name shown by ``CLIENT LIST``; None sets none.

    Retries are turned off: a broker operation that fails must raise at once so
    the node can answer its client with a temporary error, not stall it.
    """
    common: dict[str, Any] = {
        "username": target.username,
        "password": target.password,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": Retry(NoBackoff(), 0),
        "client_name": client_name,
    }
    if target.tls:
        common["ssl"] = True
        if target.options.get("ssl_cert_reqs"):
            common["ssl_cert_reqs"] = target.options["ssl_cert_reqs"]
        if target.options.get("ssl_ca_certs"):
            common["ssl_ca_certs"] = target.options["ssl_ca_certs"]
    if target.mode == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
            max_connections=max_connections,
            **common,
        )
    if target.mode == "sentinel":
        sentinel_kwargs = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        if target.options.get("sentinel_password"):
            sentinel_kwargs["password"] = target.options["sentinel_password"]
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.hosts), sentinel_kwargs=sentinel_kwargs, **common
        )
        client: Redis = sentinel.master_for(
            target.service_name, db=target.db, max_connections=max_connections
        )
        return client
    host, port = target.hosts[0]
    return Redis(host=host, port=port, db=target.db, max_connections=max_connections, **common)
