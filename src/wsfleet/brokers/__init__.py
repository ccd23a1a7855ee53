"""Brokers: the backplane a node uses for fan-out, history and presence.

:mod:`wsfleet.brokers.base` holds the contract; each implementation sits in a
module of its own and is imported only when its URL scheme is asked for, so a
missing optional dependency (``redis``, ``aio-pika``) never breaks the default
install. :func:`load_broker` is the one place that maps a URL to a module.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import NamedTuple
from urllib.parse import urlsplit

from wsfleet.brokers.base import Broker, FleetState, PresenceManager

__all__ = [
    "ALLOWED_SCHEMES",
    "Backplane",
    "BrokerConfigError",
    "check_broker_url",
    "load_broker",
    "shown_url",
]

_MEMORY_SCHEMES = ("memory",)
_REDIS_SCHEMES = ("redis", "rediss", "redis+sentinel", "redis+cluster")
_AMQP_SCHEMES = ("amqp", "amqps")

ALLOWED_SCHEMES: tuple[str, ...] = _MEMORY_SCHEMES + _REDIS_SCHEMES + _AMQP_SCHEMES
"""Every URL scheme :func:`load_broker` knows, in the order the error lists them."""


class BrokerConfigError(ValueError):
    """The broker URL names no usable broker: the operator's configuration is wrong."""


class Backplane(NamedTuple):
    """What a node uses its backend for; one backend may serve all three."""

    broker: Broker
    presence: PresenceManager
    fleet: FleetState


def load_broker(url: str, *, key_prefix: str = "wsfleet", node_id: str = "") -> Backplane:
    """Build the broker, presence manager and fleet state a broker URL names.

    ``memory://`` gives one :class:`~wsfleet.brokers.memory.MemoryBroker` (a
    fleet of one node). ``redis://``, ``rediss://``, ``redis+sentinel://``
    and ``redis+cluster://`` give the Redis backplane.

    key_prefix: prefix of every key and pub/sub channel the broker uses in a
        shared backend (default ``"wsfleet"``), so several fleets can share one.
        Ignored by the memory broker.
    node_id: this node's uid in the backend (presence entries are tagged
        with it); empty lets the broker pick one. Ignored by the memory broker.

    Raises :class:`BrokerConfigError` for an unknown scheme, a broker this
    version does not ship, a malformed URL or prefix, or a missing optional
    dependency (see :func:`check_broker_url`).
    """
    scheme = check_broker_url(url, key_prefix=key_prefix)
    if scheme in _MEMORY_SCHEMES:
        from wsfleet.brokers.memory import MemoryBroker

        memory = MemoryBroker()
        return Backplane(memory, memory, memory.fleet)
    module = _import_optional("wsfleet.brokers.redis", package="redis", extra="redis")
    redis, _ = module.create_redis_broker(url, key_prefix=key_prefix, node_id=node_id)
    return Backplane(redis, redis, redis.fleet)


def check_broker_url(url: str, *, key_prefix: str = "wsfleet") -> str:
    """Check that ``url`` and ``key_prefix`` name a broker this install can build.

    Connects to nothing, so ``wsfleet check-config`` can use it. Returns the
    URL's scheme; raises :class:`BrokerConfigError` saying what is wrong.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme in _MEMORY_SCHEMES:
        return scheme
    if scheme in _REDIS_SCHEMES:
        module = _import_optional("wsfleet.brokers.redis", package="redis", extra="redis")
        try:
            module.check_redis_config(url, key_prefix=key_prefix)
        except ValueError as exc:
            raise BrokerConfigError(str(exc)) from exc
        return scheme
    if scheme in _AMQP_SCHEMES:
        usable = ", ".join(f"{s}://" for s in _MEMORY_SCHEMES + _REDIS_SCHEMES)
        raise BrokerConfigError(
            f"the RabbitMQ broker is not available in this version; use one of: {usable}"
        )
    allowed = ", ".join(f"{s}://" for s in ALLOWED_SCHEMES)
    shown = f"{scheme}://" if scheme else "no scheme"
    raise BrokerConfigError(f"unknown broker URL scheme ({shown}); use one of: {allowed}")


def _import_optional(module: str, *, package: str, extra: str) -> ModuleType:
    """Import a broker module, turning its missing dependency into advice."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Only the optional package being absent is a configuration problem;
        # any other missing module is a bug and keeps its traceback.
        if exc.name is None or exc.name.split(".")[0] != package:
            raise
        raise BrokerConfigError(
            f"the {package!r} package is missing: install wsfleet[{extra}]"
        ) from exc


def shown_url(url: str) -> str:
    """``url`` fit for logs and ``/status``: any user name and password removed."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url.rpartition("@")[2]
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"
