"""Fakes for ports, for unit tests of the services: time that passes only when slept, and a
repository that counts its calls. Nothing here stands in for our own code in the tier that tests it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hatchway.domain.records import IdempotencyOutcome, IdempotencyRecord


class FakeClock:
    """A :class:`hatchway.ports.Clock` whose time moves only when something sleeps on it."""

    def __init__(self, epoch: float = 1_800_000_000.0) -> None:
        self.now = epoch
        self.start = epoch
        self.sleeps: list[float] = []
        #: called after each sleep with the time slept (a test makes things happen meanwhile)
        self.on_sleep: list[Any] = []

    def time(self) -> float:
        return self.now

    def now_ms(self) -> int:
        return int(self.now * 1000)

    def monotonic(self) -> float:
        return self.now - self.start

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, seconds
        self.sleeps.append(seconds)
        self.now += seconds
        for hook in self.on_sleep:
            hook(seconds)

    @property
    def slept(self) -> float:
        return sum(self.sleeps)


class HeldKeyRepo:
    """An :class:`hatchway.ports.IdempotencyRepo` on a fake clock with one key, held by a request
    that is still working on it; counts the calls. The rules are the store's: a record held past
    its expiry is taken over (keeping its run id), a completed one is answered."""

    def __init__(self, clock: FakeClock, held_for: float, request_hash: str = "fp", takeover: bool = True) -> None:
        self.clock = clock
        #: False: a holder past its expiry is never taken over (as with a node whose clock is behind)
        self.takeover = takeover
        self.record: IdempotencyRecord | None = IdempotencyRecord(
            scope="k", request_hash=request_hash, run_id="run_first", status="INPROGRESS",
            expires_at=clock.now_ms() + int(held_for * 1000),
        )  # fmt: skip
        self.begins = 0
        self.completed: list[dict[str, Any]] = []

    def idempotency_begin(
        self, scope: str, request_hash: str, run_id: str, in_progress_seconds: float, ttl_seconds: int
    ) -> IdempotencyOutcome:
        self.begins += 1
        now = self.clock.now_ms()
        expires = now + int(in_progress_seconds * 1000)
        if self.record is None:
            self.record = IdempotencyRecord(scope, request_hash, run_id, "INPROGRESS", expires)
            return IdempotencyOutcome(True, self.record)
        if self.takeover and self.record.status == "INPROGRESS" and self.record.expires_at < now:
            self.record = replace(self.record, expires_at=expires)
            return IdempotencyOutcome(True, self.record)
        return IdempotencyOutcome(False, self.record)

    def idempotency_complete(
        self, record: IdempotencyRecord, response: dict[str, Any], code: int, ttl_seconds: int
    ) -> None:
        self.completed.append(response)
        self.record = replace(record, status="COMPLETED", response=response, response_code=code)

    def idempotency_abandon(self, scope: str) -> None:
        self.record = None

    def finish_first(self, response: dict[str, Any]) -> None:
        """The first request ends with ``response``."""
        assert self.record is not None
        self.record = replace(self.record, status="COMPLETED", response=response, response_code=202)
