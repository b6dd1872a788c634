"""Outbound HTTP that cannot be turned against the gateway's own network.

HTTP actions and run callbacks send requests to addresses users choose. Every connection - the
first and each redirect - resolves the host itself and refuses loopback, link-local (cloud
metadata such as 169.254.169.254), private, unique-local, multicast and reserved addresses,
unless the operator allows ranges with ``HATCHWAY_HTTP_ALLOW``. The check sits in the network
backend, at the moment of connecting to the resolved address, so DNS rebinding between a check
and the connection cannot slip through; TLS still verifies the original host name.

:class:`HttpCallbackSender` delivers run callbacks (``callback_url``) over such connections.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hatchway.errors import BadRequest

callback_log = logging.getLogger("hatchway.callbacks")
#: tries of one callback delivery, and the time each may take
CALLBACK_ATTEMPTS = 6
CALLBACK_TIMEOUT_SECONDS = 10.0

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


# ---------------------------------------------------------------------------------------------
# run callbacks


@dataclass
class _Delivery:
    url: str
    body: bytes
    run_id: str
    sign: Callable[[bytes, int], str]
    attempt: int = 0
    due: float = 0.0


class HttpCallbackSender:
    """Delivers run callbacks from a background thread: signed at each try, through
    :func:`guarded_client` (the same destination rules as HTTP actions), retried with exponential
    backoff on network errors and 5xx/429 answers. Deliveries are kept in memory: a gateway that
    dies loses the callbacks it had not delivered yet."""

    def __init__(
        self, allowed: list[IPNetwork], attempts: int = CALLBACK_ATTEMPTS, timeout: float = CALLBACK_TIMEOUT_SECONDS
    ) -> None:
        self.allowed = allowed
        self.attempts = attempts
        self.timeout = timeout
        self._queue: queue.Queue[_Delivery] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.delivered = 0

    def enqueue(self, url: str, body: bytes, run_id: str, sign: Callable[[bytes, int], str]) -> None:
        self._queue.put(_Delivery(url, body, run_id, sign))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="hatchway-callbacks", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Nothing to release: the thread is a daemon, and undelivered callbacks are given up."""

    def _loop(self) -> None:
        waiting: list[_Delivery] = []
        while True:
            timeout = max(0.0, min((d.due for d in waiting), default=time.monotonic() + 1.0) - time.monotonic())
            with contextlib.suppress(queue.Empty):
                waiting.append(self._queue.get(timeout=min(timeout, 1.0)))
            now = time.monotonic()
            due, waiting = [d for d in waiting if d.due <= now], [d for d in waiting if d.due > now]
            for delivery in due:
                if not self._send(delivery):
                    delivery.attempt += 1
                    if delivery.attempt < self.attempts:
                        delivery.due = time.monotonic() + min(2.0**delivery.attempt, 300.0)
                        waiting.append(delivery)
                    else:
                        callback_log.warning("callback given up", extra={"run_id": delivery.run_id})

    def _send(self, delivery: _Delivery) -> bool:
        try:
            headers = {
                "content-type": "application/json",
                "user-agent": "hatchway-callback",
                "x-hatchway-run-id": delivery.run_id,
                "x-hatchway-signature": delivery.sign(delivery.body, int(time.time())),
            }
            with guarded_client(self.allowed, self.timeout, follow_redirects=False) as client:
                response = client.post(delivery.url, content=delivery.body, headers=headers)
        except Exception as exc:
            refused = refused_cause(exc)
            if refused is not None:
                callback_log.warning("callback refused", extra={"run_id": delivery.run_id, "reason": refused.message})
                delivery.attempt = self.attempts
            else:
                callback_log.info(
                    "callback failed; will retry", extra={"run_id": delivery.run_id, "error": type(exc).__name__}
                )
            return False
        if response.status_code >= 500 or response.status_code == 429:
            return False
        self.delivered += 1
        return True


if TYPE_CHECKING:  # mypy checks that the adapter answers the port
    from hatchway import ports

    def _implements(sender: HttpCallbackSender) -> ports.CallbackSender:
        return sender
