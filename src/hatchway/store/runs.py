"""Rules for runs, their queue and leases, and their logs; backends implement eight primitives.

Every status change is checked against :data:`~hatchway.domain.runs.TRANSITIONS` and written with
compare-and-set on the run's revision, so of racing writers exactly one wins and the others get
:class:`~hatchway.errors.TransitionConflict`. A backend whose failed write answers the current record
(DynamoDB's ``ReturnValuesOnConditionCheckFailure="ALL_OLD"``) saves the read before the next try.
The queue is three listings of one sparse index (:class:`Due`): runs ready to claim, leases that
ended (the sweeper's), and runs a remote engine (Batch, ECS) holds (the remote sweeper's).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import replace
from enum import Enum
from typing import Any

from hatchway.domain.records import DEFAULT_PAGE, MAX_PAGE, Page
from hatchway.domain.runs import (
    SYNC_GATEWAY_LOST,
    ActiveCount,
    LogEntry,
    Mode,
    Run,
    RunError,
    RunObserver,
    RunStatus,
    RunSummary,
    SweepResult,
    can_transition,
    now_ms,
)
from hatchway.errors import Conflict, TransitionConflict
from hatchway.store._cursor import decode_cursor, encode_cursor

#: far enough in the future to mean "any time"
_FOREVER_MS = 2**62

log = logging.getLogger("hatchway.store")


class Due(Enum):
    """The three listings of unfinished runs, each one query of a sparse index."""

    #: async runs in ENQUEUED whose ``available_at`` is at or before ``below``, oldest first
    READY = "ready"
    #: INPROGRESS or TERMINATING runs whose lease ended before ``below``, oldest lease first
    EXPIRED = "expired"
    #: unfinished runs a remote engine holds (``external_id`` set) created before ``below``, by id
    REMOTE = "remote"


def claim_changes(run: Run, owner: str, until: int, now: int) -> dict[str, Any]:
    """What a claim changes beside the status (ENQUEUED -> INPROGRESS); a backend that claims in
    one write (:meth:`BaseRunRepo._take_ready`) applies the same."""
    return {
        "attempt": run.attempt + 1,
        "started_at": run.started_at or now,
        "lease_owner": owner,
        "lease_until": until,
        "status_reason": None,
    }


class BaseRunRepo(ABC):
    """Runs: their lifecycle, the queue with its leases, and their logs."""

    #: how many claim candidates to read first (others may race for them); each costs a full read of
    #: the run, so a claim reads a few, and more (up to claim_batch_max) only when it could use none
    claim_batch = 2
    claim_batch_max = 32

    # ---- primitives ------------------------------------------------------------------------

    @abstractmethod
    def _insert_run(self, run: Run) -> bool:
        """Insert if absent (revision 0); False if the id exists."""

    @abstractmethod
    def _get_run(self, run_id: str, project_id: str | None = None) -> tuple[Run, int] | None:
        """The run and its revision. ``project_id``: the run's project where the caller knows it (a
        backend that keys runs by project needs it to find a run it has not seen yet)."""

    @abstractmethod
    def _replace_run(self, run: Run, expected_rev: int) -> tuple[bool, tuple[Run, int] | None]:
        """Write the whole run if its revision is still ``expected_rev`` (the new revision is +1).

        ``(True, None)`` when written. ``(False, current)`` when not: ``current`` is the run and its
        revision as they are now when the failed write told (DynamoDB's ALL_OLD), else None (the
        rules read it)."""

    @abstractmethod
    def _list_runs(
        self,
        project_id: str,
        environment: str,
        before: str | None,
        limit: int,
        filters: dict[str, str],
    ) -> list[Run]:
        """Runs newest first (by id), strictly before ``before``; filters: action, status, external_user_id.
        Their ``os`` may be left out (a list never shows it)."""

    @abstractmethod
    def _due_runs(self, due: Due, below: int, limit: int, after: str | None = None) -> list[Run]:
        """Up to ``limit`` runs of one listing (see :class:`Due`); for REMOTE, ids above ``after``."""

    @abstractmethod
    def _set_lease(self, run_id: str, owner: str, until: int) -> str | None:
        """Extend the lease if ``owner`` still holds it; the run's status, or None if the lease is lost."""

    @abstractmethod
    def _append_logs(self, run_id: str, entries: list[LogEntry]) -> list[LogEntry]:
        """Store entries after the run's last ``seq``, numbering them; returns them numbered."""

    @abstractmethod
    def _read_logs(self, run_id: str, after: int, limit: int) -> list[LogEntry]: ...

    # ---- optional primitives (defaults in terms of the others) ------------------------------

    #: set by a backend whose :meth:`_take_ready` claims in one write (else: claim_through_transition)
    takes_in_one_write = False

    def _take_ready(self, owner: str, until: int, now: int) -> tuple[Run, int] | None:
        """The oldest ready async run without an ``external_id``, moved to INPROGRESS with
        :func:`claim_changes` in one atomic write; it and its new revision, or None. The rules notify."""
        raise NotImplementedError

    def _replace_run_with_logs(
        self, run: Run, expected_rev: int, entries: list[LogEntry]
    ) -> tuple[bool, tuple[Run, int] | None]:
        """:meth:`_append_logs` (numbering ``entries`` in place, which ``run`` may show), then
        :meth:`_replace_run`; the entries are kept whether or not the run is written. A backend
        that can do both in one transaction overrides this."""
        self._append_logs(run.id, entries)
        return self._replace_run(run, expected_rev)

    def _begin_sync(self, run: Run) -> int | None:
        """Put a sync call's run on record while it runs: the revision written, or None when the
        backend writes nothing until the call ends (:meth:`_end_sync` then writes it whole).

        This default writes it INPROGRESS at once, so a gateway that dies mid-call leaves a record
        the sweeper fails. A remote store may skip the write: nobody knows a sync run's id before
        its answer, so the early record only serves that bookkeeping."""
        self.create_run(run)
        return 0

    def _end_sync(self, run: Run, entries: list[LogEntry]) -> tuple[bool, list[LogEntry]]:
        """Insert a finished run with its log (numbered from 1); False if the id exists.
        Backends that can do it in one write override this."""
        if not self._insert_run(run):
            return False, []
        return True, self._append_logs(run.id, entries) if entries else []

    def _run_summaries(self, project_id: str, environment: str, since_ms: int, limit: int) -> list[RunSummary]:
        """Runs created at or after ``since_ms``, newest first, at most ``limit``.

        This default pages through :meth:`_list_runs` (whole runs); a backend should answer it with
        a lean query (SQLite: the tenant index; DynamoDB: a Query on the tenant's runs with
        ``id >= run_id_floor(since_ms)`` and a projection of these fields).
        """
        out: list[RunSummary] = []
        before: str | None = None
        while len(out) < limit:
            runs = self._list_runs(project_id, environment, before, min(MAX_PAGE, limit - len(out)), {})
            for run in runs:
                if run.created_at < since_ms:
                    return out
                out.append(RunSummary.of(run))
            if not runs:
                break
            before = runs[-1].id
        return out

    def _active_counts(self, project_id: str | None, cap: int) -> list[ActiveCount]:
        """Counts of unfinished runs (ENQUEUED, INPROGRESS, TERMINATING) per tenant, mode and status.

        This default reads the queue and the leased runs (each bounded by ``cap``); SQLite overrides
        it with one GROUP BY, DynamoDB with a projected read of the index's run partitions.
        """
        counts: dict[tuple[str, str, str, str], int] = {}
        for run in [*self._due_runs(Due.READY, _FOREVER_MS, cap), *self._due_runs(Due.EXPIRED, _FOREVER_MS, cap)]:
            if project_id is not None and run.project_id != project_id:
                continue
            key = (run.project_id, run.environment, run.mode.value, run.status.value)
            counts[key] = counts.get(key, 0) + 1
        return [ActiveCount(*key, count) for key, count in sorted(counts.items())]

    # ---- the lifecycle ---------------------------------------------------------------------

    def create_run(self, run: Run) -> Run:
        """Insert a new run, at revision 0."""
        if not self._insert_run(run):
            raise Conflict(f"run {run.id} already exists")
        self._notify(run, None)
        return run

    def get_run(self, run_id: str, project_id: str | None = None, environment: str | None = None) -> Run | None:
        """A run, or None - also when it belongs to another project or environment."""
        found = self._get_run(run_id, project_id)
        if found is None:
            return None
        run = found[0]
        if project_id is not None and run.project_id != project_id:
            return None
        if environment is not None and run.environment != environment:
            return None
        return run

    def list_runs(
        self,
        project_id: str,
        environment: str,
        limit: int,
        cursor: str | None,
        filters: dict[str, str] | None = None,
    ) -> Page[Run]:
        """A page of runs, newest first, as a list shows them: a backend may leave out their ``os``
        (the head and tail of the log, most of a record), which a list never shows."""
        filters = {k: v for k, v in (filters or {}).items() if v}
        scope = ("runs", project_id, environment, json.dumps(filters, sort_keys=True))
        before = decode_cursor(cursor, scope)
        runs = self._list_runs(project_id, environment, before, limit + 1, filters)
        more = len(runs) > limit
        runs = runs[:limit]
        return Page(runs, encode_cursor(scope, runs[-1].id) if more else None)

    def transition(
        self,
        run_id: str,
        src: RunStatus,
        dst: RunStatus,
        guard: Callable[[Run], bool] | None = None,
        *,
        known: tuple[Run, int] | None = None,
        logs: list[LogEntry] | None = None,
        **changes: Any,
    ) -> Run:
        """Move a run from ``src`` to ``dst`` and apply ``changes``, atomically.

        Raises :class:`TransitionConflict` if the run is not in ``src`` (somebody else moved it), or
        if ``guard`` rejects the run as it is now. ``known`` is the run as the caller wrote it and
        that write's revision (:meth:`create_run` writes revision 0): while the store still holds
        that revision, nobody changed the run since, and it is not read again. ``logs`` are
        appended to the run's log (numbered in place before the run is written, so its ``os`` may
        show them) with the first write where the backend can, and kept whatever the outcome.
        """
        if not can_transition(src, dst):
            raise ValueError(f"{src.value} -> {dst.value} is not an allowed transition")
        pending = list(logs or ())
        found: tuple[Run, int] | None = None  # the run as it is now, once a failed write told
        try:
            if known is not None and known[0].status == src and (guard is None or guard(known[0])):
                updated = replace(known[0], status=dst, **changes)
                written, found = _write(self, updated, known[1], pending)
                if written:
                    self._notify(updated, src)
                    return updated
            for _ in range(100):
                found = found or self._get_run(run_id)
                if found is None:
                    raise TransitionConflict(run_id, src.value, None)
                run, rev = found
                if run.status != src:
                    raise TransitionConflict(run_id, src.value, run.status.value)
                if guard is not None and not guard(run):
                    raise TransitionConflict(run_id, src.value, f"{run.status.value} (changed)")
                updated = replace(run, status=dst, **changes)
                written, found = _write(self, updated, rev, pending)
                if written:
                    self._notify(updated, src)
                    return updated
            raise TransitionConflict(run_id, src.value, "contended")
        finally:
            if pending:  # no write was tried: the log is kept all the same
                self._append_logs(run_id, pending)

    def update_run(self, run_id: str, expect: RunStatus, **changes: Any) -> Run:
        """Change fields of a run that must still be in ``expect`` (no status change)."""
        found: tuple[Run, int] | None = None
        for _ in range(100):
            found = found or self._get_run(run_id)
            if found is None:
                raise TransitionConflict(run_id, expect.value, None)
            run, rev = found
            if run.status != expect:
                raise TransitionConflict(run_id, expect.value, run.status.value)
            updated = replace(run, **changes)
            written, found = self._replace_run(updated, rev)
            if written:
                return updated
        raise TransitionConflict(run_id, expect.value, "contended")

    # ---- sync calls ------------------------------------------------------------------------

    def start_sync(self, run: Run) -> int | None:
        """Put a sync call's run (INPROGRESS) on record, as this backend does; the value goes to
        :meth:`finish_sync` at the call's end."""
        return self._begin_sync(run)

    def finish_sync(
        self,
        run: Run,
        revision: int | None,
        dst: RunStatus,
        entries: list[LogEntry],
        guard: Callable[[Run], bool] | None = None,
        **changes: Any,
    ) -> tuple[Run, list[LogEntry]]:
        """Record the end of a sync call begun with :meth:`start_sync`: the run in ``dst`` with
        ``changes``, and its log; the run and the entries, numbered.

        Raises :class:`TransitionConflict` when the run on record is no longer the caller's to end
        (a cancel, the sweeper, ``guard``) and for ``dst`` TERMINATED while a record exists (a
        cancel is settled by whoever cancelled); the log is kept either way.
        """
        if revision is None:  # nothing on record yet: the run and its log in one write
            final = replace(run, status=dst, **changes)
            return final, self.record_sync_run(final, entries)
        if dst == RunStatus.TERMINATED:  # INPROGRESS -> TERMINATED is not a transition
            self.append_logs(run.id, entries)
            raise TransitionConflict(run.id, RunStatus.INPROGRESS.value, "cancelled")
        # the log goes with the end where the backend can (one transaction), and is kept regardless
        final = self.transition(
            run.id, RunStatus.INPROGRESS, dst, guard, known=(run, revision), logs=entries, **changes
        )
        return final, entries

    def record_sync_run(self, run: Run, entries: list[LogEntry]) -> list[LogEntry]:
        """Store a sync run that already ended, with its log; the entries come back numbered."""
        if run.mode != Mode.SYNC or not run.is_terminal:
            raise ValueError("only a finished sync run is recorded at its end")
        for seq, entry in enumerate(entries, start=1):
            entry.seq = seq  # the run is new, so is its log (the record's preview shares these entries)
        inserted, numbered = self._end_sync(run, entries)
        if not inserted:
            raise Conflict(f"run {run.id} already exists")
        self._notify(run, None)
        return numbered

    # ---- the queue: claims, leases, sweeps -------------------------------------------------

    def claim(self, owner: str, lease_seconds: float, now: int | None = None) -> Run | None:
        """Take the oldest ready async run: ENQUEUED -> INPROGRESS, attempt + 1, leased to ``owner``."""
        claimed = self.claim_known(owner, lease_seconds, now)
        return claimed[0] if claimed is not None else None

    def claim_known(self, owner: str, lease_seconds: float, now: int | None = None) -> tuple[Run, int | None] | None:
        """:meth:`claim`, with the revision the claim wrote where the backend tells it (else None):
        the worker hands both to :meth:`transition` as ``known``, which saves reading the run back."""
        now = now if now is not None else now_ms()
        until = now + int(lease_seconds * 1000)
        if self.takes_in_one_write:
            taken = self._take_ready(owner, until, now)
            if taken is not None:
                self._notify(taken[0], RunStatus.ENQUEUED)
            return taken
        claimed = claim_through_transition(self, owner, until, now)
        return (claimed, None) if claimed is not None else None

    def ready_runs(self, now: int | None = None, limit: int = 100) -> list[Run]:
        """Async runs waiting in the gateway's own queue whose time has come, oldest first."""
        now = now if now is not None else now_ms()
        return [run for run in self._due_runs(Due.READY, now, limit) if run.external_id is None]

    def heartbeat(self, run_id: str, owner: str, lease_seconds: float) -> RunStatus | None:
        """Renew a lease; the run's current status, or None if this owner lost the lease."""
        status = self._set_lease(run_id, owner, now_ms() + int(lease_seconds * 1000))
        return RunStatus(status) if status is not None else None

    def sweep(self, max_lost_attempts: int, now: int | None = None, limit: int = 100) -> SweepResult:
        """Settle runs whose worker stopped renewing its lease.

        An async INPROGRESS run goes back to the queue while it has attempts left (its own budget
        plus ``max_lost_attempts`` granted for lost workers), else it fails; a sync run fails (its
        caller is gone); a TERMINATING run becomes TERMINATED.
        """
        now = now if now is not None else now_ms()
        result = SweepResult()

        def still_expired(current: Run) -> bool:
            # the list may be older than the run: a heartbeat that raced the sweep wins
            return current.lease_until is not None and current.lease_until < now

        for run in self._due_runs(Due.EXPIRED, now, limit):
            try:
                if run.status == RunStatus.TERMINATING:
                    self.transition(
                        run.id, RunStatus.TERMINATING, RunStatus.TERMINATED, still_expired,
                        finished_at=now, lease_owner=None, lease_until=None,
                        status_reason="cancelled; the worker stopped before confirming",
                    )  # fmt: skip
                    result.terminated.append(run.id)
                elif run.mode == Mode.ASYNC and run.lost_attempts < max_lost_attempts:
                    self.transition(
                        run.id, RunStatus.INPROGRESS, RunStatus.ENQUEUED, still_expired,
                        available_at=now, lease_owner=None, lease_until=None,
                        lost_attempts=run.lost_attempts + 1,
                        status_reason=f"attempt {run.attempt} lost its worker; queued again",
                    )  # fmt: skip
                    result.requeued.append(run.id)
                else:
                    reason = (
                        SYNC_GATEWAY_LOST
                        if run.mode == Mode.SYNC
                        else f"the worker was lost {run.lost_attempts + 1} times"
                    )
                    self.transition(
                        run.id, RunStatus.INPROGRESS, RunStatus.FAILED, still_expired,
                        finished_at=now, lease_owner=None, lease_until=None, status_reason=reason,
                        error=RunError("platform", reason),
                    )  # fmt: skip
                    result.failed.append(run.id)
            except TransitionConflict:
                continue
        return result

    def remote_runs(self, created_before: int, limit: int = 500, after: str | None = None) -> list[Run]:
        """Runs a Batch job or ECS task holds that have not ended, created before ``created_before``,
        oldest first (the remote sweeper asks their engines what became of them); ``after``: the
        last run id of the previous page."""
        return self._due_runs(Due.REMOTE, created_before, limit, after)

    # ---- logs ------------------------------------------------------------------------------

    def append_logs(self, run_id: str, entries: Iterable[LogEntry]) -> list[LogEntry]:
        batch = list(entries)
        if not batch:
            return []
        return self._append_logs(run_id, batch)

    def read_logs(self, run_id: str, after: int = 0, limit: int = DEFAULT_PAGE) -> Page[LogEntry]:
        entries = self._read_logs(run_id, after, limit + 1)
        more = len(entries) > limit
        entries = entries[:limit]
        return Page(entries, str(entries[-1].seq) if more else None)

    # ---- statistics and observers ----------------------------------------------------------

    def run_summaries(
        self, project_id: str, environment: str, since_ms: int, limit: int = 20_000
    ) -> tuple[list[RunSummary], bool]:
        """Summaries of the runs created since ``since_ms`` (newest first) and whether ``limit`` cut them."""
        items = self._run_summaries(project_id, environment, since_ms, limit + 1)
        return items[:limit], len(items) > limit

    def active_counts(self, project_id: str | None = None, cap: int = 100_000) -> list[ActiveCount]:
        """Unfinished runs per tenant, mode and status; of one project, or of all (``None``)."""
        return self._active_counts(project_id, cap)

    def observe(self, observer: RunObserver) -> None:
        """Call ``observer(run, previous_status)`` after every run creation and status change.

        Metrics hang here, so every way a run moves (API, worker, sweeper, AWS events) is counted
        once. An observer must be quick and must not raise; a failing one is logged and skipped.
        """
        self.__dict__.setdefault("_observers", []).append(observer)

    def _notify(self, run: Run, src: RunStatus | None) -> None:
        for observer in self.__dict__.get("_observers", ()):
            try:
                observer(run, src)
            except Exception:
                log.exception("a run observer failed", extra={"run_id": run.id})


def claim_through_transition(runs: BaseRunRepo, owner: str, until: int, now: int) -> Run | None:
    """The generic claim: read a few ready candidates and move the first still free with
    :meth:`~BaseRunRepo.transition` (more, up to ``claim_batch_max``, only when it could use none)."""
    limit = runs.claim_batch
    while True:
        candidates = runs._due_runs(Due.READY, now, limit)
        for candidate in candidates:
            if candidate.external_id is not None:
                continue  # a remote executor (Batch, ECS) runs it; its events move it
            try:
                changes = claim_changes(candidate, owner, until, now)
                return runs.transition(candidate.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, **changes)
            except TransitionConflict:
                continue
        if len(candidates) < limit or limit >= runs.claim_batch_max:
            return None
        limit *= 4  # others took these, or they are not ours to run: look further


def _write(
    runs: BaseRunRepo, run: Run, expected_rev: int, pending: list[LogEntry]
) -> tuple[bool, tuple[Run, int] | None]:
    """:meth:`~BaseRunRepo._replace_run`; with the ``pending`` log entries the first time (then emptied)."""
    if not pending:
        return runs._replace_run(run, expected_rev)
    entries, pending[:] = list(pending), []
    return runs._replace_run_with_logs(run, expected_rev, entries)
