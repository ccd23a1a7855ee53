"""Who may open a WebSocket: the node's cap, the per-IP cap and the connection rate
(wsfleet.core.admission), with an injected clock."""

from __future__ import annotations

from typing import Any

from tests.core.test_limits_lifecycle import Clock
from wsfleet.core.admission import CAP_RETRY_AFTER, Admission, Refusal
from wsfleet.core.stats import NodeStats


def admission(clock: Clock | None = None, **limits: Any) -> tuple[Admission, NodeStats]:
    """An admission with ``limits``, and the node stats it counts its refusals in."""
    stats = NodeStats()
    return Admission(clock=clock or Clock(), stats=stats, **limits), stats


def let_in(adm: Admission, ip: str) -> None:
    """A handshake from ``ip`` that must pass, then its upgrade."""
    assert adm.check(ip) is None
    adm.opened(ip)


def test_the_cap_refuses_with_503_and_frees_a_place_when_one_closes() -> None:
    adm, stats = admission(connection_limit=2)
    let_in(adm, "1.1.1.1")
    assert not adm.at_capacity
    let_in(adm, "2.2.2.2")
    assert adm.at_capacity
    refusal = adm.check("3.3.3.3")
    assert refusal == Refusal(
        503, "node at its connection limit", CAP_RETRY_AFTER, "connection_limit"
    )
    assert refusal.retry_after >= 1
    assert adm.check("1.1.1.1") is not None  # an address already in is refused alike
    adm.closed("1.1.1.1")
    assert not adm.at_capacity
    let_in(adm, "3.3.3.3")
    assert adm.check("4.4.4.4") is not None
    assert stats.limit_hits == {"connection_limit": 3}


def test_the_per_ip_cap_refuses_with_429_per_address() -> None:
    adm, stats = admission(ip_connection_limit=2)
    let_in(adm, "1.1.1.1")
    let_in(adm, "1.1.1.1")
    refusal = adm.check("1.1.1.1")
    assert refusal is not None
    assert (refusal.status, refusal.limit) == (429, "ip_connection_limit")
    assert refusal.retry_after >= 1
    # Other addresses have counts of their own.
    let_in(adm, "2.2.2.2")
    let_in(adm, "2.2.2.2")
    let_in(adm, "2001:db8::1")
    assert adm.check("2.2.2.2") is not None
    assert (adm.open, adm.addresses) == (5, 3)
    # One of 1.1.1.1's connections leaves: it may open one more, not two.
    adm.closed("1.1.1.1")
    let_in(adm, "1.1.1.1")
    assert adm.check("1.1.1.1") is not None
    assert stats.limit_hits == {"ip_connection_limit": 3}


def test_the_rate_lets_a_burst_through_then_refuses_with_503_until_refilled() -> None:
    clock = Clock()
    adm, stats = admission(clock, rate=2, burst=5)
    for n in range(5):
        let_in(adm, f"10.0.0.{n}")
    refusal = adm.check("10.0.0.9")
    assert refusal is not None
    assert (refusal.status, refusal.limit) == (503, "connection_rate")
    assert refusal.retry_after >= 1  # a whole second at least, never "retry at once"
    clock.now += 0.5  # one token at 2 per second
    let_in(adm, "10.0.0.9")
    assert adm.check("10.0.0.10") is not None
    clock.now += 60  # a long pause refills the burst, not more
    assert [adm.check("10.0.0.11") is None for _ in range(6)] == [True] * 5 + [False]
    assert stats.limit_hits == {"connection_rate": 3}


def test_the_default_burst_is_one_seconds_worth_of_the_rate() -> None:
    clock = Clock()
    adm, stats = admission(clock, rate=4)
    assert [adm.check("1.1.1.1") is None for _ in range(5)] == [True] * 4 + [False]
    clock.now += 1
    assert [adm.check("1.1.1.1") is None for _ in range(5)] == [True] * 4 + [False]
    # Under one per second the burst is still one handshake.
    slow, _ = admission(Clock(), rate=0.2)
    assert [slow.check("1.1.1.1") is None for _ in range(2)] == [True, False]
    refusal = slow.check("1.1.1.1")
    assert refusal is not None and refusal.retry_after == 5  # whole seconds, rounded up


def test_caps_are_checked_before_the_rate_so_a_refusal_spends_no_token() -> None:
    clock = Clock()
    adm, stats = admission(clock, connection_limit=1, ip_connection_limit=1, rate=1, burst=1)
    let_in(adm, "1.1.1.1")  # the one token
    clock.now += 1  # a token again
    for _ in range(10):  # refused by the caps, over and over
        refusal = adm.check("2.2.2.2")
        assert refusal is not None and refusal.limit == "connection_limit"
    adm.connection_limit = 0
    for _ in range(10):
        refusal = adm.check("1.1.1.1")
        assert refusal is not None and refusal.limit == "ip_connection_limit"
    # The token the refused handshakes did not spend is still there, for one.
    let_in(adm, "2.2.2.2")
    refusal = adm.check("3.3.3.3")
    assert refusal is not None and refusal.limit == "connection_rate"
    assert stats.limit_hits == {
        "connection_limit": 10,
        "ip_connection_limit": 10,
        "connection_rate": 1,
    }


def test_opened_and_closed_keep_exact_counts() -> None:
    adm, _ = admission(connection_limit=3, ip_connection_limit=3)
    for ip in ("1.1.1.1", "1.1.1.1", "2.2.2.2"):
        adm.opened(ip)
    assert (adm.open, adm.addresses, adm.at_capacity) == (3, 2, True)
    adm.closed("2.2.2.2")
    assert (adm.open, adm.addresses, adm.at_capacity) == (2, 1, False)
    adm.closed("1.1.1.1")
    adm.closed("1.1.1.1")
    assert (adm.open, adm.addresses) == (0, 0)
    # Every address is forgotten once its last connection closes: a fresh start.
    for _ in range(3):
        let_in(adm, "1.1.1.1")
    assert adm.check("1.1.1.1") is not None


def test_zero_disables_every_limit() -> None:
    adm, stats = admission(connection_limit=0, ip_connection_limit=0, rate=0, burst=0)
    for _ in range(10_000):
        let_in(adm, "1.1.1.1")
    assert not adm.at_capacity
    assert (adm.open, adm.addresses) == (10_000, 1)
    assert stats.limit_hits == {}
