"""Choosing a broker from its URL."""

from __future__ import annotations

import importlib
import types

import pytest

from wsfleet.brokers import (
    ALLOWED_SCHEMES,
    BrokerConfigError,
    check_broker_url,
    load_broker,
    shown_url,
)
from wsfleet.brokers.memory import MemoryBroker


@pytest.mark.parametrize("url", ["memory://", "MEMORY://", "memory://anything?x=1"])
def test_memory_url_gives_one_memory_broker_for_both_roles(url: str) -> None:
    broker, presence, fleet = load_broker(url)
    assert isinstance(broker, MemoryBroker)
    assert presence is broker
    assert fleet is broker.fleet


@pytest.mark.parametrize(
    ("url", "mode", "tls"),
    [
        ("redis://localhost:6379/0", "standalone", False),
        ("rediss://cache.example:6380", "standalone", True),
        ("redis+sentinel://s1:26379,s2:26379/mymaster", "sentinel", False),
        ("redis+cluster://n1:7000,n2:7001", "cluster", False),
    ],
)
async def test_redis_urls_give_a_redis_broker_without_connecting(
    url: str, mode: str, tls: bool
) -> None:
    from wsfleet.brokers.redis import RedisBroker

    broker, presence, fleet = load_broker(url, key_prefix="fleet-a", node_id="node-1")
    assert isinstance(broker, RedisBroker) and presence is broker
    assert fleet is broker.fleet
    assert (broker.target.mode, broker.target.tls) == (mode, tls)
    await broker.close()  # never started: nothing to wait for


def _failing_import(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    real = importlib.import_module

    def import_module(name: str, package: str | None = None) -> types.ModuleType:
        if name == "wsfleet.brokers.redis":
            raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", import_module)


def test_missing_redis_package_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _failing_import(monkeypatch, "redis.asyncio")
    with pytest.raises(BrokerConfigError, match=r"install wsfleet\[redis\]"):
        load_broker("redis://localhost")


def test_other_missing_modules_are_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_import(monkeypatch, "wsfleet.brokers.redis_helpers")
    with pytest.raises(ModuleNotFoundError):
        load_broker("redis://localhost")


@pytest.mark.parametrize("url", ["amqp://guest@rabbit/", "amqps://rabbit:5671/"])
def test_rabbitmq_is_not_available_yet(url: str) -> None:
    with pytest.raises(BrokerConfigError, match="RabbitMQ broker is not available"):
        load_broker(url)


@pytest.mark.parametrize("url", ["kafka://broker:9092", "localhost:6379", "", "http://x"])
def test_unknown_scheme_lists_the_allowed_ones(url: str) -> None:
    with pytest.raises(BrokerConfigError) as raised:
        load_broker(url)
    for scheme in ALLOWED_SCHEMES:
        assert f"{scheme}://" in str(raised.value)


@pytest.mark.parametrize(
    ("url", "prefix", "message"),
    [
        ("redis://a:6379,b:6379/0", "wsfleet", "one host"),
        ("redis+sentinel://s1:26379", "wsfleet", "master"),
        ("redis://localhost:6379/0", "bad{prefix}", "braces"),
    ],
)
def test_a_redis_url_or_prefix_that_cannot_work_is_a_config_error(
    url: str, prefix: str, message: str
) -> None:
    # A configuration error, not a traceback at start: check-config reports it too.
    with pytest.raises(BrokerConfigError, match=message):
        check_broker_url(url, key_prefix=prefix)
    with pytest.raises(BrokerConfigError, match=message):
        load_broker(url, key_prefix=prefix)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:s3cret@cache:6379/0", "redis://cache:6379/0"),
        ("redis+sentinel://:pw@s1:26379,s2:26379/main", "redis+sentinel://s1:26379,s2:26379/main"),
        ("memory://", "memory://"),
    ],
)
def test_shown_url_never_carries_credentials(url: str, shown: str) -> None:
    assert shown_url(url) == shown
