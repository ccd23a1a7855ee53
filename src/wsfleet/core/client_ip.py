"""The address a connection comes from, through trusted proxies only.

Behind an ingress every TCP peer is the ingress; the client's address is in
``X-Forwarded-For``. Anyone can send that header, so it is believed only when
the peer is a configured proxy, and only as far back as the chain of trusted
proxies goes: the rightmost address that is not a trusted proxy is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The networks whose ``X-Forwarded-For`` is believed; empty: nobody's."""

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n.strip(), strict=False) for n in networks
        )

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._networks)

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address, given the TCP peer and the X-Forwarded-For header."""
        if not forwarded_for or not self.trusts(peer):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            address = _strip_port(hop.strip())
            if not _is_ip(address):
                return client  # a forged or garbled hop: stop at what is known
            client = address
            if not self.trusts(address):
                return client
        return client  # every hop is one of ours: the leftmost is the client


def _strip_port(text: str) -> str:
    if text.startswith("["):  # [v6]:port
        return text[1:].split("]", 1)[0]
    if text.count(":") == 1:  # v4:port
        return text.split(":", 1)[0]
    return text


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
