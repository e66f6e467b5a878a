"""Which IP addresses fetcher refuses to connect to by default (SSRF protection).

A public page must not be able to make fetcher read, and publish, what sits on
the machine or its network: loopback, RFC 1918, link-local (169.254.169.254 is
the cloud metadata service), CGNAT, multicast, reserved and unspecified
addresses, and their IPv6 forms. Addresses that carry an IPv4 address inside
(IPv4-mapped, 6to4, NAT64) are judged by that IPv4 address, since that is where
the packets end up. Python 3.11's `is_global` alone is not enough: it calls
multicast, site-local fec0::/10, 6to4 and NAT64 addresses global whatever they
embed, and calls every NAT64 address reserved.

`refusal` is a pure function of the address; fetcher/connect.py applies it to
every address a host name resolves to, when the connection is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Address = IPv4Address | IPv6Address
Policy = Callable[[Address], str | None]  # why an address is refused, or None

_THIS_NETWORK = IPv4Network("0.0.0.0/8")  # "this network": 0.0.0.0 reaches the local host on Linux
_RFC1918 = (IPv4Network("10.0.0.0/8"), IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/16"))
_CGNAT = IPv4Network("100.64.0.0/10")  # RFC 6598 shared address space
_UNIQUE_LOCAL = IPv6Network("fc00::/7")
_NAT64 = IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix: IPv4 in the last 32 bits
_NAT64_LOCAL = IPv6Network("64:ff9b:1::/48")  # RFC 8215 local-use prefix
_NAT64_LOCAL_96 = IPv6Network("64:ff9b:1::/96")  # its /96 form, the one whose embedding we can tell
_TEREDO = IPv6Network("2001::/32")


def refusal(address: Address | str) -> str | None:
    """Why a connection to `address` is refused (e.g. "a loopback address"), or
    None when it is a public address that may be fetched."""
    ip = ip_address(address) if isinstance(address, str) else address
    return _v4_refusal(ip) if isinstance(ip, IPv4Address) else _v6_refusal(ip)


def _v4_refusal(ip: IPv4Address) -> str | None:
    if ip in _THIS_NETWORK:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if any(ip in network for network in _RFC1918):
        return "a private (RFC 1918) address"
    if ip.is_link_local:
        return "a link-local address"
    if ip in _CGNAT:
        return "a shared (CGNAT) address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved address"
    return None


def _v6_refusal(ip: IPv6Address) -> str | None:
    embedded = _embedded_v4(ip)
    if embedded is not None:
        form, v4 = embedded
        reason = _v4_refusal(v4)
        return f"{form} of {v4}, {reason}" if reason else None
    if ip in _NAT64_LOCAL:
        return "a local-use NAT64 address"  # not in its /96 form: where the IPv4 address sits is the operator's choice
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip in _UNIQUE_LOCAL:
        return "a private (unique local) address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_site_local:
        return "a site-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip in _TEREDO:
        return "a Teredo tunnel address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved address"
    return None


def _embedded_v4(ip: IPv6Address) -> tuple[str, IPv4Address] | None:
    """The IPv4 address an IPv6 address stands for, and the form that carries it."""
    if ip.ipv4_mapped is not None:
        return "the IPv4-mapped form", ip.ipv4_mapped
    if ip.sixtofour is not None:
        return "the 6to4 form", ip.sixtofour
    if ip in _NAT64 or ip in _NAT64_LOCAL_96:
        return "the NAT64 form", IPv4Address(int(ip) & 0xFFFFFFFF)
    return None
