"""Doing a request's work once per Idempotency-Key (or per content, for Connect's retries).

The repository keeps one record per scope: who is working on it (INPROGRESS, with a reserved run
id) and, once done, the answer to replay. A repeat that arrives while the first request is still
working waits for its answer, polling the record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hatchway.config import Settings
from hatchway.domain.runs import new_run_id
from hatchway.errors import Conflict, HatchwayError, Overloaded, Unavailable, error_record, rebuild_error
from hatchway.faults import CrashPoints
from hatchway.ports import Clock, IdempotencyRepo

T = TypeVar("T")

#: how often a repeat looks again at a request still being worked on
POLL_SECONDS = 0.005


def same(answer: dict[str, Any]) -> dict[str, Any]:
    """The encoding of an answer that is already a JSON document."""
    return answer


class Idempotency:
    """One request's work per scope, its answer replayed to repeats."""

    def __init__(self, repo: IdempotencyRepo, clock: Clock, settings: Settings, crash_points: CrashPoints) -> None:
        self.repo = repo
        self.clock = clock
        self.settings = settings
        self.crash_points = crash_points

    def once(
        self,
        scope: str,
        fingerprint: str,
        ttl_seconds: int,
        work: Callable[[str], T],
        *,
        encode: Callable[[T], dict[str, Any]],
        decode: Callable[[dict[str, Any]], T],
        keep_errors: bool,
        replay_success: bool = True,
        code: int = 200,
    ) -> T:
        """Do ``work`` once per (scope, fingerprint); a repeat gets the first answer.

        ``work`` gets the run id reserved for the request (kept across a takeover after a crash,
        so a run created before the crash is found, not duplicated). Its answer is kept as
        ``encode`` makes it (with ``code``) and given to repeats as ``decode`` rebuilds it. A repeat
        that arrives while the first request is still working waits for its answer. With
        ``keep_errors`` an error is replayed too (the same error, raised again); otherwise it frees
        the key. Without ``replay_success`` a success is replayed only to repeats that arrived while
        it was being worked out; a repeat arriving later is a new request and does the work again.
        """
        in_progress = self.settings.idempotency_in_progress_seconds
        deadline = self.clock.monotonic() + in_progress
        waited = False
        while True:
            outcome = self.repo.idempotency_begin(scope, fingerprint, new_run_id(), in_progress, ttl_seconds)
            record = outcome.record
            if outcome.is_owner:
                self.crash_points.reach("after_idempotency_begin", record.run_id)
                break
            if record.status == "COMPLETED" and record.response is not None:
                if "__error__" in record.response:
                    raise rebuild_error(record.response["__error__"])
                if not (replay_success or waited):
                    self.repo.idempotency_abandon(scope)
                    continue
                return decode(record.response)
            waited = True
            if self.clock.monotonic() > deadline:
                raise Conflict("a request with this Idempotency-Key is still in progress")
            self.clock.sleep(POLL_SECONDS)
        try:
            answer = work(record.run_id)
        except HatchwayError as exc:
            if keep_errors and not isinstance(exc, Overloaded | Unavailable):
                self.repo.idempotency_complete(record, {"__error__": error_record(exc)}, 0, ttl_seconds)
            else:
                self.repo.idempotency_abandon(scope)
            raise
        except BaseException:
            self.repo.idempotency_abandon(scope)
            raise
        self.repo.idempotency_complete(record, encode(answer), code, ttl_seconds)
        return answer
