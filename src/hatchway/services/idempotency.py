"""Doing a request's work once per Idempotency-Key (or per content, for Connect's retries).

The repository keeps one record per scope: who is working on it (INPROGRESS, with a reserved run
id) and, once done, the answer to replay. A repeat that arrives while the first request is still
working waits for its answer, looking again after 5, 10, 20 ... ms (capped at
``HATCHWAY_IDEMPOTENCY_POLL_MAX_SECONDS``), one store call per look; the wait ends when the first
request's in-progress time runs out (the key is then taken over) or when the caller's own deadline
comes, whichever is first. A repeat still waiting then is answered :class:`InProgress` (409 with
``Retry-After``) instead of outliving its own request.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from hatchway.config import IdempotencySettings
from hatchway.domain.runs import new_run_id
from hatchway.errors import HatchwayError, InProgress, Overloaded, Unavailable, error_record, rebuild_error
from hatchway.faults import CrashPoints
from hatchway.ports import Clock, IdempotencyRepo

T = TypeVar("T")

#: the first pause of a repeat before it looks again at a request still being worked on; each
#: following pause doubles, up to ``IdempotencySettings.idempotency_poll_max_seconds``
FIRST_POLL_SECONDS = 0.005


def same(answer: dict[str, Any]) -> dict[str, Any]:
    """The encoding of an answer that is already a JSON document."""
    return answer


class Idempotency:
    """One request's work per scope, its answer replayed to repeats."""

    def __init__(
        self, repo: IdempotencyRepo, clock: Clock, settings: IdempotencySettings, crash_points: CrashPoints
    ) -> None:
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
        deadline: float | None = None,
    ) -> T:
        """Do ``work`` once per (scope, fingerprint); a repeat gets the first answer.

        ``work`` gets the run id reserved for the request (kept across a takeover after a crash,
        so a run created before the crash is found, not duplicated). Its answer is kept as
        ``encode`` makes it (with ``code``) and given to repeats as ``decode`` rebuilds it. A repeat
        that arrives while the first request is still working waits for its answer. With
        ``keep_errors`` an error is replayed too (the same error, raised again); otherwise it frees
        the key. Without ``replay_success`` a success is replayed only to repeats that arrived while
        it was being worked out; a repeat arriving later is a new request and does the work again.

        ``deadline`` (``clock.monotonic()`` seconds) is when the caller must have its answer: a
        repeat waits no longer and raises :class:`InProgress` (``deadline=clock.monotonic()``
        refuses at once). Without it, a repeat waits as long as the first request holds the key.
        """
        in_progress = self.settings.idempotency_in_progress_seconds
        pause = FIRST_POLL_SECONDS
        waited = False
        expired_looks = 0
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
            now = self.clock.monotonic()
            left = max(0, record.expires_at - self.clock.now_ms()) / 1000  # the holder's in-progress time
            # a look just after it takes the key over (the store compares whole milliseconds); one
            # that does not (another node's clock) ends the wait rather than polling every millisecond
            expired_looks = expired_looks + 1 if left == 0 else 0
            end = now + left + 0.001 if deadline is None else min(now + left + 0.001, deadline)
            if now >= end or expired_looks > 1:
                raise InProgress(
                    "a request with this Idempotency-Key is still in progress; try again later",
                    retry_after=max(1, math.ceil(left)),
                )
            self.clock.sleep(min(pause, end - now))
            pause = min(pause * 2, self.settings.idempotency_poll_max_seconds)
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
