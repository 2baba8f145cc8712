"""Who a request counts against: its authenticated principal, else its client IP.

The client IP is the direct peer, unless that peer is a trusted proxy
(``TRUSTED_PROXIES``): then ``X-Forwarded-For`` is read from the right,
skipping trusted proxies, and the first address that is not one is the
client. Addresses a client writes further left are never believed, and with
no trusted proxy (the default) the header is ignored altogether.

IPv6 clients count per /64: one subscriber usually holds a whole /64, so
counting single addresses would let one client rotate through billions.

>>> from ipaddress import ip_network
>>> client_ip("10.0.0.2", "198.51.100.7, 203.0.113.9", (ip_network("10.0.0.0/8"),))
'203.0.113.9'
>>> client_ip("192.0.2.1", "203.0.113.9", ())      # untrusted peer: header ignored
'192.0.2.1'
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from robyn import Request

from vedina.http.context import context_of

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=8192)
def _parse(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("["):  # "[2001:db8::1]" or "[2001:db8::1]:443"
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # "192.0.2.1:8080"
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address in network for network in proxies)


def _label(address: Address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_address(peer: str | None, forwarded_for: str | None, proxies: Sequence[Network]) -> Address | None:
    """The client's address: the peer, or what trusted proxies say it is."""
    address = _parse(peer or "")
    if address is None:
        return None
    if forwarded_for and proxies and _trusted(address, proxies):
        for hop in reversed(forwarded_for.split(",")):
            hop_address = _parse(hop)
            if hop_address is None:
                break  # garbage to the left of trusted hops: keep the last trusted one
            address = hop_address
            if not _trusted(address, proxies):
                break
    return address


def client_ip(peer: str | None, forwarded_for: str | None, proxies: Sequence[Network]) -> str:
    """The client address a limit counts against (an IPv6 client as its /64)."""
    address = client_address(peer, forwarded_for, proxies)
    return "unknown" if address is None else _label(address)


def _forwarded_for(request: Request, proxies: Sequence[Network]) -> str | None:
    if not proxies:
        return None
    return ",".join(request.headers.get_all("x-forwarded-for") or []) or None


def request_client_address(request: Request, proxies: Sequence[Network]) -> str:
    """The client's address as sessions record it (the proxy-aware rule of the limiter)."""
    address = client_address(request.ip_addr, _forwarded_for(request, proxies), proxies)
    return "" if address is None else str(address)


def principal_of(request: Request, proxies: Sequence[Network]) -> str:
    """``user:<id>`` / ``api_key:<id>`` when authenticated, else ``ip:<address>``."""
    principal = context_of(request).principal
    if principal is not None:
        return f"{principal.kind}:{principal.subject}"
    return "ip:" + client_ip(request.ip_addr, _forwarded_for(request, proxies), proxies)
