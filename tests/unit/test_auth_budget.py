"""The budget of failed authentications per client address (hatchway.api.throttle)."""

from __future__ import annotations

from hatchway.api.throttle import FailureBudget, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_spent_budget_refuses_until_a_failure_has_refilled() -> None:
    clock = Clock()
    budget = FailureBudget(3, window_seconds=30, clock=clock)  # one failure back every 10 s
    for _ in range(3):
        assert budget.retry_after("192.0.2.1") is None
        budget.spend("192.0.2.1")
    assert budget.retry_after("192.0.2.1") == 10
    assert budget.retry_after("192.0.2.2") is None  # another address has its own
    clock.now += 4
    assert budget.retry_after("192.0.2.1") == 6
    clock.now += 6
    assert budget.retry_after("192.0.2.1") is None
    budget.spend("192.0.2.1")
    assert budget.retry_after("192.0.2.1") == 10  # one refilled, one spent
    clock.now += 1000
    for _ in range(3):  # a full refill, never more than the budget
        budget.spend("192.0.2.1")
    assert budget.retry_after("192.0.2.1") == 10


def test_memory_is_bounded_by_forgetting_the_least_recent() -> None:
    budget = FailureBudget(1, window_seconds=60, max_clients=100, clock=Clock())
    for n in range(1000):
        budget.spend(f"10.0.{n // 256}.{n % 256}")
    assert len(budget._buckets) == 100
    assert budget.retry_after("10.0.3.231") is not None  # the most recent is remembered
    assert budget.retry_after("10.0.0.0") is None  # the oldest was forgotten


def test_an_ipv6_host_spends_one_budget_for_its_whole_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("198.51.100.7") == "198.51.100.7"
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key("unknown") == "unknown"
