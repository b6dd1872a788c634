"""Rules for Idempotency-Key records; backends implement the four primitives.

A key is claimed with one conditional write; a failed one answers the record in the way (DynamoDB:
``ReturnValuesOnConditionCheckFailure="ALL_OLD"``; SQLite: read in the same transaction), so a
duplicate request learns about the first one without a second read. A key held in progress past
its expiry (its first request died) is taken over, keeping the first request's run id.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any

from hatchway.domain.records import IdempotencyOutcome, IdempotencyRecord
from hatchway.domain.runs import now_ms
from hatchway.errors import Conflict


class BaseIdempotencyRepo(ABC):
    """Idempotency keys: who owns a request, and what it answered."""

    # ---- primitives ------------------------------------------------------------------------

    @abstractmethod
    def _get_idempotency(self, scope: str) -> IdempotencyRecord | None:
        """The record of a key (only needed when a failed write could not tell who holds it)."""

    @abstractmethod
    def _put_idempotency(
        self, record: IdempotencyRecord, replace_expired_before: int | None
    ) -> tuple[bool, IdempotencyRecord | None]:
        """Insert; or, when ``replace_expired_before`` is given, replace an INPROGRESS record that
        expired before that time. ``(True, None)`` when written; ``(False, holder)`` when a live
        record is in the way, ``holder`` being that record (None if it is gone by now)."""

    @abstractmethod
    def _complete_idempotency(self, record: IdempotencyRecord) -> None: ...

    @abstractmethod
    def _delete_idempotency(self, scope: str) -> None: ...

    # ---- rules -----------------------------------------------------------------------------

    def idempotency_begin(
        self, scope: str, request_hash: str, run_id: str, in_progress_seconds: float, ttl_seconds: int
    ) -> IdempotencyOutcome:
        """Claim an idempotency key for a request, or learn what it already answered.

        A key held INPROGRESS past ``in_progress_seconds`` (its first request died) is taken over;
        the new owner keeps the first request's run id, so a run created before the crash is found
        instead of duplicated.
        """
        now = now_ms()
        record = IdempotencyRecord(
            scope=scope,
            request_hash=request_hash,
            run_id=run_id,
            status="INPROGRESS",
            expires_at=now + int(in_progress_seconds * 1000),
        )
        for _ in range(10):
            written, holder = self._put_idempotency(record, None)
            if written:
                return IdempotencyOutcome(True, record)
            existing = holder if holder is not None else self._get_idempotency(scope)
            if existing is None:
                continue
            if existing.status == "COMPLETED" and existing.expires_at < now:
                self._delete_idempotency(scope)
                continue
            if existing.request_hash != request_hash:
                raise Conflict("this Idempotency-Key was used with a different request body")
            if existing.status == "INPROGRESS" and existing.expires_at < now:
                takeover = replace(existing, expires_at=now + int(in_progress_seconds * 1000))
                if self._put_idempotency(takeover, now)[0]:
                    return IdempotencyOutcome(True, takeover)
                continue
            return IdempotencyOutcome(False, existing)
        raise Conflict("this Idempotency-Key is contended; try again")

    def idempotency_complete(
        self, record: IdempotencyRecord, response: dict[str, Any], code: int, ttl_seconds: int
    ) -> None:
        done = replace(
            record,
            status="COMPLETED",
            response=response,
            response_code=code,
            expires_at=now_ms() + ttl_seconds * 1000,
        )
        self._complete_idempotency(done)

    def idempotency_abandon(self, scope: str) -> None:
        self._delete_idempotency(scope)
