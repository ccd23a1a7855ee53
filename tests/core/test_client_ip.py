"""The client's address through trusted proxies only (wsfleet.core.client_ip)."""

from __future__ import annotations

import pytest

from wsfleet.core.client_ip import TrustedProxies

INGRESS = TrustedProxies(["10.0.0.0/8", "192.168.1.7"])


def test_without_proxies_the_peer_is_the_client_whatever_the_header() -> None:
    proxies = TrustedProxies([])
    assert not proxies
    for header in (None, "", "1.2.3.4", "1.2.3.4, 5.6.7.8"):
        assert proxies.client_ip("10.0.0.1", header) == "10.0.0.1"


def test_an_untrusted_peer_cannot_name_another_client() -> None:
    assert INGRESS
    assert INGRESS.client_ip("203.0.113.5", "1.2.3.4") == "203.0.113.5"
    assert INGRESS.client_ip("192.168.1.8", "1.2.3.4") == "192.168.1.8"  # next to a proxy


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        # The proxy appended the address it saw: the rightmost one that is not ours.
        ("10.0.0.1", "1.2.3.4", "1.2.3.4"),
        ("10.0.0.1", "1.2.3.4, 5.6.7.8", "5.6.7.8"),  # 1.2.3.4 may be forged
        ("192.168.1.7", "1.2.3.4", "1.2.3.4"),
        # Several proxies of ours in a row are skipped.
        ("10.0.0.1", "1.2.3.4, 10.1.1.1, 192.168.1.7", "1.2.3.4"),
        ("10.0.0.1", "9.9.9.9, 1.2.3.4, 10.1.1.1", "1.2.3.4"),
        # Every hop is ours: the leftmost is the client (an internal caller).
        ("10.0.0.1", "10.1.1.1, 10.2.2.2", "10.1.1.1"),
        # No header, or an empty one: the peer.
        ("10.0.0.1", None, "10.0.0.1"),
        ("10.0.0.1", "", "10.0.0.1"),
        # Whitespace around hops does not matter.
        ("10.0.0.1", "  1.2.3.4  ,10.1.1.1 ", "1.2.3.4"),
    ],
)
def test_a_trusted_peer_names_the_rightmost_untrusted_hop(
    peer: str, header: str | None, client: str
) -> None:
    assert INGRESS.client_ip(peer, header) == client


@pytest.mark.parametrize(
    ("header", "client"),
    [
        # A garbled rightmost hop: nothing beyond the peer is known.
        ("1.2.3.4, garbage", "10.0.0.1"),
        ("unknown", "10.0.0.1"),
        (",", "10.0.0.1"),
        ("1.2.3.4, ", "10.0.0.1"),
        ("1.2.3.4,,", "10.0.0.1"),
        ("1.2.3.4, 999.1.1.1", "10.0.0.1"),
        # A garbled hop behind trusted ones: the last trusted address read.
        ("garbage, 10.2.2.2", "10.2.2.2"),
        ("1.2.3.4, , 10.2.2.2", "10.2.2.2"),
        # A garbled hop left of the client does not matter.
        ("garbage, 1.2.3.4", "1.2.3.4"),
    ],
)
def test_garbage_and_empty_hops_stop_the_walk(header: str, client: str) -> None:
    assert INGRESS.client_ip("10.0.0.1", header) == client


@pytest.mark.parametrize(
    ("header", "client"),
    [
        ("1.2.3.4:5678", "1.2.3.4"),
        ("1.2.3.4:5678, 10.1.1.1:80", "1.2.3.4"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("1.2.3.4, [2001:db8::2]:443", "2001:db8::2"),
    ],
)
def test_hops_with_ports_and_ipv6(header: str, client: str) -> None:
    assert INGRESS.client_ip("10.0.0.1", header) == client


def test_ipv6_networks() -> None:
    proxies = TrustedProxies(["fd00::/8", "2001:db8:ffff::1"])
    assert proxies.client_ip("fd00::1", "2001:db8::5") == "2001:db8::5"
    assert proxies.client_ip("2001:db8:ffff::1", "1.2.3.4") == "1.2.3.4"
    assert proxies.client_ip("fd00::1", "2001:db8::5, fd12::7") == "2001:db8::5"
    # A v6 peer outside the networks is not believed; nor is a v4 one.
    assert proxies.client_ip("2001:db8::9", "1.2.3.4") == "2001:db8::9"
    assert proxies.client_ip("10.0.0.1", "1.2.3.4") == "10.0.0.1"


def test_an_ipv4_mapped_ipv6_peer_is_matched_as_ipv4() -> None:
    # A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
    proxies = TrustedProxies(["127.0.0.0/8"])
    assert proxies.trusts("::ffff:127.0.0.1")
    assert proxies.client_ip("::ffff:127.0.0.1", "1.2.3.4") == "1.2.3.4"
    assert proxies.client_ip("::ffff:128.0.0.1", "1.2.3.4") == "::ffff:128.0.0.1"
    # A mapped hop of ours is skipped like its IPv4 form.
    assert proxies.client_ip("127.0.0.1", "1.2.3.4, ::ffff:127.0.0.9") == "1.2.3.4"


def test_trusts_refuses_what_is_not_an_address() -> None:
    assert INGRESS.trusts("10.1.2.3")
    assert not INGRESS.trusts("11.0.0.1")
    assert not INGRESS.trusts("")
    assert not INGRESS.trusts("localhost")
    # A single address and a network with host bits set are both accepted.
    assert TrustedProxies([" 10.1.2.3/8 "]).trusts("10.200.0.1")
