"""A budget of failed authentications per client address, so tokens cannot be guessed at speed.

Each client address (an IPv6 address by its /64, which one host usually holds whole) has a bucket
of ``budget`` failures that refills evenly over ``window_seconds``. A wrong, unknown, revoked or
expired token spends one; with the bucket empty, every request of that address that needs a token
is answered 429 with ``Retry-After`` - a correct token included, or the budget would not slow
guessing at all - until a failure's worth has refilled. Requests that authenticate spend nothing,
and other addresses are not affected. At most ``max_clients`` addresses are remembered (the least
recently failing are forgotten first), so memory stays bounded whatever the number of attackers.

The budget lives in the process: ``hatchway serve`` has one; on Lambda each warm container has its
own, and API Gateway's throttling or AWS WAF is the place for a fleet-wide limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


def client_key(address: str) -> str:
    """Who spends a budget: an IPv4 address, or the /64 network of an IPv6 one."""
    if ":" not in address:
        return address
    import ipaddress

    try:
        return str(ipaddress.IPv6Network(f"{address.split('%')[0]}/64", strict=False))
    except ValueError:
        return address


class FailureBudget:
    """Failures per client in token buckets (see the module docstring)."""

    def __init__(
        self,
        budget: int,
        window_seconds: float,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = budget
        self.rate = budget / window_seconds  # failures refilled per second
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (left, when)
        self._lock = threading.Lock()

    def _left(self, key: str, now: float) -> float:
        left, when = self._buckets.get(key, (float(self.budget), now))
        return min(float(self.budget), left + (now - when) * self.rate)

    def retry_after(self, address: str) -> int | None:
        """None while ``address`` may try a token; else the seconds until it may again."""
        key = client_key(address)
        with self._lock:
            if key not in self._buckets:
                return None
            left = self._left(key, self.clock())
        if left >= 1:
            return None
        return max(1, math.ceil((1 - left) / self.rate))

    def spend(self, address: str) -> None:
        """Count one failed authentication of ``address``."""
        key = client_key(address)
        with self._lock:
            now = self.clock()
            self._buckets[key] = (max(0.0, self._left(key, now) - 1), now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
