"""Outbound HTTP that cannot be turned against the gateway's own network.

HTTP actions and run callbacks send requests to addresses users choose. Every connection - the
first and each redirect - resolves the host itself and refuses loopback, link-local (cloud
metadata such as 169.254.169.254), private, unique-local, multicast and reserved addresses,
unless the operator allows ranges with ``HATCHWAY_HTTP_ALLOW``. The check sits in the network
backend, at the moment of connecting to the resolved address, so DNS rebinding between a check
and the connection cannot slip through; TLS still verifies the original host name.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from hatchway.errors import BadRequest

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(BadRequest):
    """The request would reach an address the gateway does not call."""


def allowed_networks(spec: Iterable[str]) -> list[IPNetwork]:
    """Parse ``HATCHWAY_HTTP_ALLOW`` entries: CIDRs, or the words ``loopback`` / ``private``."""
    named = {
        "loopback": ["127.0.0.0/8", "::1/128"],
        "private": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
    }
    networks: list[IPNetwork] = []
    for entry in spec:
        entry = entry.strip()
        if not entry:
            continue
        for cidr in named.get(entry.lower(), [entry]):
            networks.append(ipaddress.ip_network(cidr, strict=False))
    return networks


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


def check_address(address: IPAddress, allowed: list[IPNetwork]) -> bool:
    return is_public(address) or any(address in network for network in allowed)


def resolve_allowed(host: str, port: int, allowed: list[IPNetwork]) -> list[str]:
    """The addresses of ``host`` the gateway may connect to; refused if none (or any) is off-limits.

    If any address of a name is off-limits the whole name is refused: a name that resolves to
    both a public and a metadata address is a rebinding attempt, not a choice.
    """
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
        candidates = [literal]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise DestinationRefused(f"cannot resolve {host!r}") from None
        candidates = [ipaddress.ip_address(info[4][0]) for info in infos]
    refused = [str(a) for a in candidates if not check_address(a, allowed)]
    if refused or not candidates:
        raise DestinationRefused(
            f"{host!r} resolves to an address the gateway does not call "
            "(loopback, link-local, private or reserved); an operator may allow it with HATCHWAY_HTTP_ALLOW"
        )
    return [str(a) for a in candidates]


def guarded_client(allowed: list[IPNetwork], timeout: float, follow_redirects: bool = True) -> Any:
    """An ``httpx.Client`` whose every connection passes the destination check."""
    import httpcore
    import httpx
    from httpcore._backends.sync import SyncBackend

    class GuardedBackend(SyncBackend):
        def connect_tcp(self, host: str, port: int, timeout: float | None = None, **kwargs: Any) -> Any:  # type: ignore[override]
            addresses = resolve_allowed(host, port, allowed)
            last: Exception | None = None
            for address in addresses:
                try:
                    return super().connect_tcp(address, port, timeout=timeout, **kwargs)
                except httpcore.ConnectError as exc:
                    last = exc
            raise last or httpcore.ConnectError(f"cannot connect to {host}")

    transport = httpx.HTTPTransport(retries=0)
    transport._pool._network_backend = GuardedBackend()
    return httpx.Client(
        transport=transport,
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=5,
        trust_env=False,  # an environment proxy would bypass the check
    )


def refused_cause(exc: BaseException) -> DestinationRefused | None:
    """The DestinationRefused behind an httpx error, if that is what it was."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DestinationRefused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
