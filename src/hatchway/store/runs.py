"""The store: rules here, primitives in the backends.

:class:`BaseStore` owns every rule about state - version numbering and no-op re-registration,
status transitions (compare-and-set on a revision, checked against :data:`~hatchway.domain.runs.TRANSITIONS`),
queue claims with leases, the lease sweeper, log sequence numbers and truncation, idempotency
records, and opaque tenant-bound pagination cursors. A backend (``sqlite.py``, ``dynamodb.py``)
implements only the ``_``-prefixed primitives: get/put/conditional-update of a handful of record
kinds. The same contract suite (``tests/contract``) runs against every backend.

Pipelines (:mod:`hatchway.domain.pipelines.records`) add two record kinds with the same discipline: definition
versions behind a head (like actions) and executions written whole with compare-and-set on a
revision (like runs). Their primitives raise ``NotImplementedError`` until a backend provides
them, so a store without pipelines keeps working for everything else.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hatchway.domain.actions import ActionHead, ActionRecord
from hatchway.domain.pipelines.records import Execution, PipelineHead, PipelineRecord
from hatchway.domain.records import DEFAULT_PAGE, MAX_PAGE, Document, IdempotencyOutcome, IdempotencyRecord, Page
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
from hatchway.domain.tenants import Project, TokenRecord
from hatchway.errors import Conflict, NotFound, TransitionConflict, ValidationFailed

#: far enough in the future to mean "any time"
_FOREVER_MS = 2**62


class BaseStore(ABC):
    """Rules of hatchway's state; backends supply the primitives."""

    #: how many claim candidates to read first (others may race for them); each costs a full read of
    #: the run, so a claim reads a few, and more (up to claim_batch_max) only when it could use none
    claim_batch = 2
    claim_batch_max = 32

    # ---- primitives ------------------------------------------------------------------------

    @abstractmethod
    def _put_project(self, project: Project) -> bool:
        """Insert if absent; False if the id exists."""

    @abstractmethod
    def _get_project(self, project_id: str) -> Project | None: ...

    @abstractmethod
    def _put_token(self, token: TokenRecord) -> None: ...

    @abstractmethod
    def _get_token(self, token_id: str) -> TokenRecord | None: ...

    @abstractmethod
    def _list_tokens(self, project_id: str) -> list[TokenRecord]: ...

    @abstractmethod
    def _delete_token(self, token_id: str) -> bool: ...

    @abstractmethod
    def _touch_token(self, token_id: str, when: int) -> None: ...

    @abstractmethod
    def _get_head(self, project_id: str, environment: str, name: str) -> ActionHead | None: ...

    @abstractmethod
    def _put_version(self, record: ActionRecord, head: ActionHead, expected_latest: int | None) -> bool:
        """Write a version and move the head, if the head's latest version is still ``expected_latest``
        (None: no head yet). False when another registration won the race."""

    @abstractmethod
    def _set_head_deleted(self, project_id: str, environment: str, name: str) -> bool: ...

    @abstractmethod
    def _get_version(self, project_id: str, environment: str, name: str, version: int) -> ActionRecord | None: ...

    @abstractmethod
    def _find_version_by_digest(self, project_id: str, environment: str, name: str, digest: str) -> ActionRecord | None:
        """The newest version with that digest."""

    @abstractmethod
    def _list_heads(
        self, project_id: str, environment: str, after: str | None, limit: int, tag: str | None
    ) -> list[ActionHead]:
        """Live heads ordered by name, strictly after ``after``."""

    @abstractmethod
    def _list_versions(
        self, project_id: str, environment: str, name: str, before: int | None, limit: int
    ) -> list[ActionRecord]:
        """Versions newest first, strictly below ``before``."""

    @abstractmethod
    def _insert_run(self, run: Run) -> bool:
        """Insert if absent; False if the id exists."""

    @abstractmethod
    def _get_run(self, run_id: str) -> tuple[Run, int] | None:
        """The run and its revision."""

    @abstractmethod
    def _replace_run(self, run: Run, expected_rev: int) -> bool:
        """Write the whole run if its revision is still ``expected_rev`` (the new revision is +1)."""

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

    @abstractmethod
    def _ready_runs(self, now: int, limit: int) -> list[Run]:
        """Async runs in ENQUEUED whose ``available_at`` has passed, oldest first."""

    @abstractmethod
    def _expired_leases(self, now: int, limit: int) -> list[Run]:
        """INPROGRESS or TERMINATING runs whose lease ended before ``now``."""

    @abstractmethod
    def _set_lease(self, run_id: str, owner: str, until: int) -> str | None:
        """Extend the lease if ``owner`` still holds it; the run's status, or None if the lease is lost."""

    @abstractmethod
    def _append_logs(self, run_id: str, entries: list[LogEntry]) -> list[LogEntry]:
        """Store entries after the run's last ``seq``, numbering them; returns them numbered."""

    @abstractmethod
    def _read_logs(self, run_id: str, after: int, limit: int) -> list[LogEntry]: ...

    @abstractmethod
    def _get_idempotency(self, scope: str) -> IdempotencyRecord | None: ...

    @abstractmethod
    def _put_idempotency(self, record: IdempotencyRecord, replace_expired_before: int | None) -> bool:
        """Insert; or, when ``replace_expired_before`` is given, replace an INPROGRESS record that
        expired before that time. False when a live record is in the way."""

    @abstractmethod
    def _complete_idempotency(self, record: IdempotencyRecord) -> None: ...

    @abstractmethod
    def _delete_idempotency(self, scope: str) -> None: ...

    @abstractmethod
    def _put_document(self, document: Document) -> None:
        """Insert or replace."""

    @abstractmethod
    def _get_document(self, project_id: str, environment: str, kind: str, name: str) -> Document | None: ...

    @abstractmethod
    def _delete_document(self, project_id: str, environment: str, kind: str, name: str) -> bool: ...

    @abstractmethod
    def _list_documents(
        self, project_id: str, environment: str, kind: str, after: str | None, limit: int
    ) -> list[Document]:
        """Documents of a kind ordered by name, strictly after ``after``."""

    # ---- pipeline primitives (not abstract: a backend without pipelines still works) ---------

    def _get_pipeline_head(self, project_id: str, environment: str, name: str) -> PipelineHead | None:
        raise NotImplementedError(f"{type(self).__name__} does not keep pipelines")

    def _put_pipeline_version(self, record: PipelineRecord, head: PipelineHead, expected_latest: int | None) -> bool:
        """Write a version and move the head if its latest version is still ``expected_latest``
        (None: no head yet). False when another definition won the race."""
        raise NotImplementedError(f"{type(self).__name__} does not keep pipelines")

    def _get_pipeline_version(
        self, project_id: str, environment: str, name: str, version: int
    ) -> PipelineRecord | None:
        raise NotImplementedError(f"{type(self).__name__} does not keep pipelines")

    def _list_pipeline_heads(
        self, project_id: str, environment: str, after: str | None, limit: int
    ) -> list[PipelineHead]:
        """Live heads ordered by name, strictly after ``after``."""
        raise NotImplementedError(f"{type(self).__name__} does not keep pipelines")

    def _set_pipeline_head_deleted(self, project_id: str, environment: str, name: str) -> bool:
        raise NotImplementedError(f"{type(self).__name__} does not keep pipelines")

    def _insert_execution(self, execution: Execution) -> bool:
        """Insert if absent; False if the id exists."""
        raise NotImplementedError(f"{type(self).__name__} does not keep pipelines")

    def _get_execution(self, execution_id: str) -> tuple[Execution, int] | None:
        """The execution and its revision."""
        raise NotImplementedError(f"{type(self).__name__} does not keep pipelines")

    def _replace_execution(self, execution: Execution, expected_rev: int) -> bool:
        """Write the whole execution if its revision is still ``expected_rev`` (the new one is +1)."""
        raise NotImplementedError(f"{type(self).__name__} does not keep pipelines")

    def _list_executions(
        self, project_id: str, environment: str, pipeline: str | None, before: str | None, limit: int,
        status: str | None,
    ) -> list[Execution]:  # fmt: skip
        """Executions newest first (by id), strictly before ``before``; of one pipeline when given."""
        raise NotImplementedError(f"{type(self).__name__} does not keep pipelines")

    def _active_executions(self, engine: str, limit: int) -> list[Execution]:
        """Executions of ``engine`` that have not ended, oldest first."""
        raise NotImplementedError(f"{type(self).__name__} does not keep pipelines")

    def _remote_runs(self, created_before: int, limit: int, after: str | None = None) -> list[Run]:
        """Unfinished runs a remote engine holds (``external_id`` set), created before ``created_before``,
        oldest first, with ids above ``after`` if given. Only stores that hand runs to Batch or ECS need it."""
        raise NotImplementedError(f"{type(self).__name__} does not list remote runs")

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

        This default reads the queue and the leased runs through :meth:`_ready_runs` and
        :meth:`_expired_leases` (each bounded by ``cap``); SQLite overrides it with one GROUP BY.
        """
        counts: dict[tuple[str, str, str, str], int] = {}
        for run in [*self._ready_runs(_FOREVER_MS, cap), *self._expired_leases(_FOREVER_MS, cap)]:
            if project_id is not None and run.project_id != project_id:
                continue
            key = (run.project_id, run.environment, run.mode.value, run.status.value)
            counts[key] = counts.get(key, 0) + 1
        return [ActiveCount(*key, count) for key, count in sorted(counts.items())]

    def close(self) -> None:
        """Release connections."""

    def ping(self) -> None:
        """Raise :class:`~hatchway.errors.Unavailable` if the store cannot be reached."""

    # ---- projects and tokens ---------------------------------------------------------------

    def create_project(self, project: Project) -> Project:
        if not self._put_project(project):
            raise Conflict(f"project {project.id} already exists")
        return project

    def ensure_project(self, project: Project) -> Project:
        self._put_project(project)
        return self._get_project(project.id) or project

    def get_project(self, project_id: str) -> Project | None:
        return self._get_project(project_id)

    def put_token(self, token: TokenRecord) -> None:
        self._put_token(token)

    def get_token(self, token_id: str) -> TokenRecord | None:
        return self._get_token(token_id)

    def list_tokens(self, project_id: str) -> list[TokenRecord]:
        return self._list_tokens(project_id)

    def delete_token(self, project_id: str, token_id: str) -> bool:
        token = self._get_token(token_id)
        if token is None or token.project_id != project_id:
            return False
        return self._delete_token(token_id)

    def touch_token(self, token_id: str, when: int) -> None:
        self._touch_token(token_id, when)

    # ---- actions ---------------------------------------------------------------------------

    def register_version(
        self, project_id: str, environment: str, spec: dict[str, Any], digest: str
    ) -> tuple[ActionRecord, bool]:
        """A new version, or the latest one if it has the same digest (``created`` False)."""
        name = spec["name"]
        for _ in range(50):
            head = self._get_head(project_id, environment, name)
            if head is not None and not head.deleted:
                latest = self._latest(head)
                if latest is not None and latest.digest == digest:
                    return latest, False
            expected = head.latest_version if head else None
            record = ActionRecord(
                project_id=project_id,
                environment=environment,
                name=name,
                version=(expected or 0) + 1,
                digest=digest,
                created_at=now_ms(),
                spec=spec,
            )
            new_head = ActionHead(project_id, environment, name, record.version, record.tags, False)
            if self._put_version(record, new_head, expected):
                return record, True
        raise Conflict(f"action {name} is being registered concurrently; try again")

    def get_action(
        self,
        project_id: str,
        environment: str,
        name: str,
        version: int | None = None,
        digest: str | None = None,
        include_deleted: bool = False,
    ) -> ActionRecord | None:
        head = self._get_head(project_id, environment, name)
        if head is None or (head.deleted and not include_deleted):
            return None
        if digest is not None:
            record = self._find_version_by_digest(project_id, environment, name, digest)
            if record is None or (version is not None and record.version != version):
                return None
            return record
        if version is None or version == head.latest_version:
            return self._latest(head)
        return self._get_version(project_id, environment, name, version)

    def _latest(self, head: ActionHead) -> ActionRecord | None:
        if head.record is not None and head.record.version == head.latest_version:
            return head.record
        return self._get_version(head.project_id, head.environment, head.name, head.latest_version)

    def list_actions(
        self, project_id: str, environment: str, limit: int, cursor: str | None, tag: str | None = None
    ) -> Page[ActionRecord]:
        scope = ("actions", project_id, environment, tag or "")
        after = decode_cursor(cursor, scope)
        heads = self._list_heads(project_id, environment, after, limit + 1, tag)
        records = []
        for head in heads[:limit]:
            record = self._latest(head)
            if record is not None:
                records.append(record)
        more = len(heads) > limit
        return Page(records, encode_cursor(scope, heads[limit - 1].name) if more else None)

    def list_versions(
        self, project_id: str, environment: str, name: str, limit: int, cursor: str | None
    ) -> Page[ActionRecord]:
        head = self._get_head(project_id, environment, name)
        if head is None or head.deleted:
            raise NotFound(f"no action named {name}")
        scope = ("versions", project_id, environment, name)
        before = decode_cursor(cursor, scope)
        items = self._list_versions(project_id, environment, name, before, limit + 1)
        more = len(items) > limit
        items = items[:limit]
        return Page(items, encode_cursor(scope, items[-1].version) if more else None)

    def delete_action(self, project_id: str, environment: str, name: str) -> bool:
        head = self._get_head(project_id, environment, name)
        if head is None or head.deleted:
            return False
        return self._set_head_deleted(project_id, environment, name)

    # ---- runs ------------------------------------------------------------------------------

    def create_run(self, run: Run) -> Run:
        """Insert a new run, at revision 0."""
        if not self._insert_run(run):
            raise Conflict(f"run {run.id} already exists")
        self._notify(run, None)
        return run

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
        numbered = self.append_logs(run.id, entries)
        if dst == RunStatus.TERMINATED:  # INPROGRESS -> TERMINATED is not a transition
            raise TransitionConflict(run.id, RunStatus.INPROGRESS.value, "cancelled")
        final = self.transition(run.id, RunStatus.INPROGRESS, dst, guard, known=(run, revision), **changes)
        return final, numbered

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
                logging.getLogger("hatchway.store").exception("a run observer failed", extra={"run_id": run.id})

    def run_summaries(
        self, project_id: str, environment: str, since_ms: int, limit: int = 20_000
    ) -> tuple[list[RunSummary], bool]:
        """Summaries of the runs created since ``since_ms`` (newest first) and whether ``limit`` cut them."""
        items = self._run_summaries(project_id, environment, since_ms, limit + 1)
        return items[:limit], len(items) > limit

    def remote_runs(self, created_before: int, limit: int = 500, after: str | None = None) -> list[Run]:
        """Runs a Batch job or ECS task holds that have not ended, created before ``created_before``,
        oldest first (the remote sweeper asks their engines what became of them); ``after``: the
        last run id of the previous page."""
        return self._remote_runs(created_before, limit, after)

    def active_counts(self, project_id: str | None = None, cap: int = 100_000) -> list[ActiveCount]:
        """Unfinished runs per tenant, mode and status; of one project, or of all (``None``)."""
        return self._active_counts(project_id, cap)

    def get_run(self, run_id: str, project_id: str | None = None, environment: str | None = None) -> Run | None:
        """A run, or None - also when it belongs to another project or environment."""
        found = self._get_run(run_id)
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
        **changes: Any,
    ) -> Run:
        """Move a run from ``src`` to ``dst`` and apply ``changes``, atomically.

        Raises :class:`TransitionConflict` if the run is not in ``src`` (somebody else moved it), or
        if ``guard`` rejects the run as it is now. ``known`` is the run as the caller wrote it and
        that write's revision (:meth:`create_run` writes revision 0): while the store still holds
        that revision, nobody changed the run since, and it is not read again.
        """
        if not can_transition(src, dst):
            raise ValueError(f"{src.value} -> {dst.value} is not an allowed transition")
        if known is not None and known[0].status == src and (guard is None or guard(known[0])):
            updated = replace(known[0], status=dst, **changes)
            if self._replace_run(updated, known[1]):
                self._notify(updated, src)
                return updated
        for _ in range(100):
            found = self._get_run(run_id)
            if found is None:
                raise TransitionConflict(run_id, src.value, None)
            run, rev = found
            if run.status != src:
                raise TransitionConflict(run_id, src.value, run.status.value)
            if guard is not None and not guard(run):
                raise TransitionConflict(run_id, src.value, f"{run.status.value} (changed)")
            updated = replace(run, status=dst, **changes)
            if self._replace_run(updated, rev):
                self._notify(updated, src)
                return updated
        raise TransitionConflict(run_id, src.value, "contended")

    def update_run(self, run_id: str, expect: RunStatus, **changes: Any) -> Run:
        """Change fields of a run that must still be in ``expect`` (no status change)."""
        for _ in range(100):
            found = self._get_run(run_id)
            if found is None:
                raise TransitionConflict(run_id, expect.value, None)
            run, rev = found
            if run.status != expect:
                raise TransitionConflict(run_id, expect.value, run.status.value)
            updated = replace(run, **changes)
            if self._replace_run(updated, rev):
                return updated
        raise TransitionConflict(run_id, expect.value, "contended")

    def claim(self, owner: str, lease_seconds: float, now: int | None = None) -> Run | None:
        """Take the oldest ready async run: ENQUEUED -> INPROGRESS, attempt + 1, leased to ``owner``."""
        now = now if now is not None else now_ms()
        limit = self.claim_batch
        while True:
            candidates = self._ready_runs(now, limit)
            for candidate in candidates:
                if candidate.external_id is not None:
                    continue  # a remote executor (Batch, ECS) runs it; its events move it
                try:
                    return self.transition(
                        candidate.id,
                        RunStatus.ENQUEUED,
                        RunStatus.INPROGRESS,
                        attempt=candidate.attempt + 1,
                        started_at=candidate.started_at or now,
                        lease_owner=owner,
                        lease_until=now + int(lease_seconds * 1000),
                        status_reason=None,
                    )
                except TransitionConflict:
                    continue
            if len(candidates) < limit or limit >= self.claim_batch_max:
                return None
            limit *= 4  # others took these, or they are not ours to run: look further

    def ready_runs(self, now: int | None = None, limit: int = 100) -> list[Run]:
        """Async runs waiting in the gateway's own queue whose time has come, oldest first."""
        now = now if now is not None else now_ms()
        return [run for run in self._ready_runs(now, limit) if run.external_id is None]

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

        for run in self._expired_leases(now, limit):
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

    # ---- documents -------------------------------------------------------------------------

    def put_document(self, document: Document) -> Document:
        document.updated_at = now_ms()
        self._put_document(document)
        return document

    def get_document(self, project_id: str, environment: str, kind: str, name: str) -> Document | None:
        """A live document; an expired one is removed and reported missing."""
        document = self._get_document(project_id, environment, kind, name)
        if document is not None and document.is_expired(now_ms()):
            self._delete_document(project_id, environment, kind, name)
            return None
        return document

    def delete_document(self, project_id: str, environment: str, kind: str, name: str) -> bool:
        return self._delete_document(project_id, environment, kind, name)

    def list_documents(
        self, project_id: str, environment: str, kind: str, limit: int = DEFAULT_PAGE, cursor: str | None = None
    ) -> Page[Document]:
        scope = ("documents", project_id, environment, kind)
        after = decode_cursor(cursor, scope)
        now = now_ms()
        found = [
            d for d in self._list_documents(project_id, environment, kind, after, limit + 1) if not d.is_expired(now)
        ]
        more = len(found) > limit
        found = found[:limit]
        return Page(found, encode_cursor(scope, found[-1].name) if more else None)

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

    # ---- idempotency -----------------------------------------------------------------------

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
            if self._put_idempotency(record, None):
                return IdempotencyOutcome(True, record)
            existing = self._get_idempotency(scope)
            if existing is None:
                continue
            if existing.status == "COMPLETED" and existing.expires_at < now:
                self._delete_idempotency(scope)
                continue
            if existing.request_hash != request_hash:
                raise Conflict("this Idempotency-Key was used with a different request body")
            if existing.status == "INPROGRESS" and existing.expires_at < now:
                takeover = replace(existing, expires_at=now + int(in_progress_seconds * 1000))
                if self._put_idempotency(takeover, now):
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

    # ---- pipelines ---------------------------------------------------------------------------

    def register_pipeline(
        self, project_id: str, environment: str, name: str, spec: dict[str, Any], digest: str,
        engine_ref: str | None = None,
    ) -> tuple[PipelineRecord, bool]:  # fmt: skip
        """A new version, or the latest one if it has the same digest (``created`` False)."""
        for _ in range(50):
            head = self._get_pipeline_head(project_id, environment, name)
            if head is not None and not head.deleted:
                latest = self._get_pipeline_version(project_id, environment, name, head.latest_version)
                if latest is not None and latest.digest == digest:
                    return latest, False
            expected = head.latest_version if head else None
            record = PipelineRecord(
                project_id, environment, name, (expected or 0) + 1, digest, now_ms(), spec, engine_ref
            )
            if self._put_pipeline_version(
                record, PipelineHead(project_id, environment, name, record.version), expected
            ):
                return record, True
        raise Conflict(f"pipeline {name} is being defined concurrently; try again")

    def get_pipeline(
        self, project_id: str, environment: str, name: str, version: int | None = None, include_deleted: bool = False
    ) -> PipelineRecord | None:
        head = self._get_pipeline_head(project_id, environment, name)
        if head is None or (head.deleted and not include_deleted):
            return None
        return self._get_pipeline_version(project_id, environment, name, version or head.latest_version)

    def list_pipelines(self, project_id: str, environment: str, limit: int, cursor: str | None) -> Page[PipelineRecord]:
        scope = ("pipelines", project_id, environment)
        heads = self._list_pipeline_heads(project_id, environment, decode_cursor(cursor, scope), limit + 1)
        records = [
            record
            for head in heads[:limit]
            if (record := self._get_pipeline_version(project_id, environment, head.name, head.latest_version))
        ]
        more = len(heads) > limit
        return Page(records, encode_cursor(scope, heads[limit - 1].name) if more else None)

    def delete_pipeline(self, project_id: str, environment: str, name: str) -> bool:
        head = self._get_pipeline_head(project_id, environment, name)
        if head is None or head.deleted:
            return False
        return self._set_pipeline_head_deleted(project_id, environment, name)

    def create_execution(self, execution: Execution) -> Execution:
        if not self._insert_execution(execution):
            raise Conflict(f"execution {execution.id} already exists")
        return execution

    def get_execution(
        self, execution_id: str, project_id: str | None = None, environment: str | None = None
    ) -> Execution | None:
        """An execution, or None - also when it belongs to another project or environment."""
        found = self._get_execution(execution_id)
        if found is None:
            return None
        execution = found[0]
        if project_id is not None and execution.project_id != project_id:
            return None
        if environment is not None and execution.environment != environment:
            return None
        return execution

    def update_execution(self, execution_id: str, change: Callable[[Execution], Execution | None]) -> Execution:
        """Apply ``change`` to the current execution and write it, atomically.

        ``change`` gets a fresh copy each time a concurrent writer wins the race, and may return
        None to write nothing (the current execution is returned).
        """
        for _ in range(100):
            found = self._get_execution(execution_id)
            if found is None:
                raise NotFound(f"no execution {execution_id}")
            current, rev = found
            updated = change(copy.deepcopy(current))
            if updated is None or updated == current:
                return current
            if self._replace_execution(updated, rev):
                return updated
        raise Conflict(f"execution {execution_id} is changing too fast; try again")

    def list_executions(
        self,
        project_id: str,
        environment: str,
        pipeline: str | None,
        limit: int,
        cursor: str | None,
        status: str | None = None,
    ) -> Page[Execution]:
        scope = ("executions", project_id, environment, pipeline or "", status or "")
        items = self._list_executions(
            project_id, environment, pipeline, decode_cursor(cursor, scope), limit + 1, status or None
        )
        more = len(items) > limit
        items = items[:limit]
        return Page(items, encode_cursor(scope, items[-1].id) if more else None)

    def active_executions(self, engine: str, limit: int = 200) -> list[Execution]:
        return self._active_executions(engine, limit)


# ---------------------------------------------------------------------------------------------
# cursors


def encode_cursor(scope: tuple[str, ...], position: str | int) -> str:
    raw = json.dumps([list(scope), position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, scope: tuple[str, ...]) -> Any:
    """The position inside a cursor; a cursor made for another list or tenant is refused."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, position = json.loads(raw)
    except (ValueError, binascii.Error, TypeError):
        raise ValidationFailed.at(["query", "cursor"], "not a cursor this API issued") from None
    if made_for != list(scope) or not isinstance(position, str | int):
        raise ValidationFailed.at(["query", "cursor"], "this cursor belongs to another list")
    return position


def monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


if TYPE_CHECKING:  # mypy checks that these answer their ports
    from hatchway import ports

    def _implements(
        store: BaseStore,
    ) -> tuple[
        ports.TenantRepo, ports.ActionRepo, ports.RunRepo, ports.IdempotencyRepo, ports.DocumentRepo, ports.PipelineRepo
    ]:
        return store, store, store, store, store, store
