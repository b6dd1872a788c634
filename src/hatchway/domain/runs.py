"""The run lifecycle as data.

A run is one invocation of an action. Its status moves only along :data:`TRANSITIONS`; stores
apply a transition atomically (compare-and-set on the current status) and a lost race raises
:class:`~hatchway.errors.TransitionConflict` instead of overwriting. ``ENQUEUED`` is also where a
run waits between attempts, so a retry is ``INPROGRESS -> ENQUEUED`` with a later ``available_at``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from hatchway.domain.parameters import hide_secrets

# an action's log lines and the two kinds of call are the container contract's words too: they are
# defined in the runtime (copied into action images, which carry no domain) and are the domain's own
from hatchway.runtime.contract import OS_PREVIEW_HEAD as OS_PREVIEW_HEAD
from hatchway.runtime.contract import OS_PREVIEW_TAIL as OS_PREVIEW_TAIL
from hatchway.runtime.contract import LogEntry as LogEntry
from hatchway.runtime.contract import Mode as Mode


class RunStatus(StrEnum):
    """Where a run is in its life."""

    ENQUEUED = "ENQUEUED"
    INPROGRESS = "INPROGRESS"
    SUCCESSFUL = "SUCCESSFUL"
    FAILED = "FAILED"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({RunStatus.SUCCESSFUL, RunStatus.FAILED, RunStatus.TERMINATED})

#: Every allowed status change. Anything else is refused by the store.
TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.ENQUEUED: frozenset({RunStatus.INPROGRESS, RunStatus.TERMINATED, RunStatus.FAILED}),
    RunStatus.INPROGRESS: frozenset(
        {RunStatus.SUCCESSFUL, RunStatus.FAILED, RunStatus.TERMINATING, RunStatus.ENQUEUED}
    ),
    RunStatus.TERMINATING: frozenset({RunStatus.TERMINATED}),
    RunStatus.SUCCESSFUL: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.TERMINATED: frozenset(),
}


def can_transition(src: RunStatus, dst: RunStatus) -> bool:
    return dst in TRANSITIONS[src]


# ---------------------------------------------------------------------------------------------
# identifiers and time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_id_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_run_id(now_ms: int | None = None) -> str:
    """``run_`` + 26 characters that sort by creation time (a monotonic ULID)."""
    global _last_ms, _last_rand
    ms = now_ms if now_ms is not None else int(time.time() * 1000)
    with _id_lock:
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # room to increment
        _last_ms, _last_rand = ms, rand
    return "run_" + _b32(ms, 10) + _b32(rand, 16)


def run_id_floor(ms: int) -> str:
    """The smallest run id created at ``ms``: ids sort by creation time, so ``id >= floor`` is a time range."""
    return "run_" + _b32(ms, 10)


def backoff_seconds(interval: float, attempt: int, cap: float = 300.0) -> float:
    """Exponential backoff from a retry interval for ``attempt`` (1-based), capped (an interval above
    the cap is kept). Runs and pipeline steps back off alike."""
    if interval <= 0:
        return 0.0
    return float(min(interval * (2 ** max(0, attempt - 1)), max(interval, cap)))


def retry_delay_seconds(run: Run, attempt: int, cap: float = 300.0) -> float:
    """The wait before retrying ``run`` after its ``attempt``: a pipeline step's run waits its
    step's ``retry_interval`` each time (Buddy's fixed delay), any other backs off exponentially."""
    if run.options.get("pipeline"):
        return max(0.0, run.retry_interval_seconds)
    return backoff_seconds(run.retry_interval_seconds, attempt, cap)


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as an ISO 8601 UTC string (``...Z``)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# records


#: why the sweeper fails a sync run whose gateway stopped mid-call (not the action's fault)
SYNC_GATEWAY_LOST = "the gateway stopped during the sync call"


@dataclass
class RunError:
    """Why a run did not succeed. ``kind`` is user | application | timeout | platform | cancelled."""

    kind: str
    message: str
    exception_id: str | None = None
    code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "exceptionId": self.exception_id,
            "code": self.code,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RunError | None:
        if not data:
            return None
        return cls(
            kind=data["kind"],
            message=data["message"],
            exception_id=data.get("exceptionId"),
            code=data.get("code"),
        )


@dataclass
class Run:
    """One invocation of an action: the record the store keeps and the API shows."""

    id: str
    project_id: str
    environment: str
    action_name: str
    action_version: int
    action_digest: str
    invoked: str = "run"
    mode: Mode = Mode.ASYNC
    status: RunStatus = RunStatus.ENQUEUED
    status_reason: str | None = None
    attempt: int = 0
    max_attempts: int = 1
    parameters: dict[str, Any] = field(default_factory=dict)
    ret: Any = None
    exports: dict[str, Any] = field(default_factory=dict)
    os: list[LogEntry] = field(default_factory=list)
    error: RunError | None = None
    created_at: int = 0
    started_at: int | None = None
    finished_at: int | None = None
    duration_ms: int | None = None
    external_user_id: str | None = None
    idempotency_key: str | None = None
    timeout_seconds: int = 0
    retry_interval_seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    # queue bookkeeping (not part of the API answer)
    available_at: int = 0
    lease_owner: str | None = None
    lease_until: int | None = None
    lost_attempts: int = 0
    #: the job or task running the run on a remote executor (AWS Batch job id, ECS task ARN)
    external_id: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def to_api(self, with_log: bool = True) -> dict[str, Any]:
        """The run's public body (the API's, a callback's, the run archive's): secret values (``#``
        keys at any depth) never shown; without ``os`` (the head and tail of its log) in list pages."""
        body: dict[str, Any] = {
            "id": self.id,
            "project_id": self.project_id,
            "environment": self.environment,
            "action": {"name": self.action_name, "version": self.action_version, "digest": self.action_digest},
            "invoked": self.invoked,
            "mode": self.mode.value,
            "status": self.status.value,
            "status_reason": self.status_reason,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "parameters": hide_secrets(self.parameters),
            "ret": self.ret,
            "exports": self.exports,
            "os": [entry.to_api() for entry in self.os] if with_log else None,
            "error": self.error.to_dict() if self.error else None,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_ms": self.duration_ms,
            "external_user_id": self.external_user_id,
        }
        if not with_log:
            del body["os"]
        return body


@dataclass
class SyncOutcome:
    """How a sync call ended well: its run, the action's answer and log; ``stash_id`` when it used a
    file stash, ``cached`` when it asked for a cache tag (True: answered from the cache)."""

    run_id: str
    status: str
    ret: Any
    exports: dict[str, Any]
    os: list[LogEntry]
    duration_ms: int | None
    stash_id: str | None = None
    cached: bool | None = None

    def to_record(self) -> dict[str, Any]:
        """The answer as a cache tag keeps it (and as the API shows it, but for ``cached``)."""
        record: dict[str, Any] = {
            "run_id": self.run_id,
            "status": self.status,
            "ret": self.ret,
            "exports": self.exports,
            "os": [entry.to_api() for entry in self.os],
            "duration_ms": self.duration_ms,
        }
        if self.stash_id is not None:
            record["stash_id"] = self.stash_id
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], cached: bool | None = None) -> SyncOutcome:
        entries = [LogEntry(e["k"], e["ts"], e["msg"], e.get("err"), e.get("seq", 0)) for e in record.get("os") or []]
        return cls(
            record["run_id"], record["status"], record.get("ret"), record["exports"], entries,
            record.get("duration_ms"), record.get("stash_id"), cached,
        )  # fmt: skip


def preview(entries: list[LogEntry]) -> list[LogEntry]:
    """The head and tail of a log, as a run record carries it."""
    if len(entries) <= OS_PREVIEW_HEAD + OS_PREVIEW_TAIL:
        return list(entries)
    return entries[:OS_PREVIEW_HEAD] + entries[-OS_PREVIEW_TAIL:]


@dataclass
class RunRequest:
    """A run or sync call as the API received it (already shape-validated)."""

    parameters: dict[str, Any] = field(default_factory=dict)
    version: int | None = None
    digest: str | None = None
    timeout_seconds: int | None = None
    retries: int | None = None
    external_user_id: str | None = None
    #: Ductape's request records (body, query, params, headers): config.json's ``input``
    input: dict[str, Any] | None = None
    #: project files placed in ``in/`` for actions that download their inputs
    inputs: list[str] = field(default_factory=list)
    #: a file stash: "NEW" / "" / True for a new one, or an existing id
    stash_id: str | bool | None = None
    #: a cache tag (sync calls): a fresh stored answer is reused
    cache: str | None = None
    #: a session {tag, token}: a JWT whose claims fill $Session{...} placeholders
    session: dict[str, Any] | None = None
    #: where the final run record is POSTed (signed)
    callback_url: str | None = None
    #: extra top-level keys of config.json (Keboola's ``runtime``)
    config: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    #: seconds before the first retry (None: the action's ``retry.interval_seconds``)
    retry_interval_seconds: float | None = None

    def fingerprint(self, route: str) -> str:
        body = {"route": route, **{k: v for k, v in vars(self).items() if k != "session"}}
        if self.session is not None:
            body["session"] = hashlib.sha256(json.dumps(self.session, sort_keys=True).encode()).hexdigest()
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def owner_engine(external_id: str) -> str:
    """Which engine made ``external_id``: ECS task ARNs name a task, Batch job ids are UUIDs."""
    return "ecs" if ":task/" in external_id else "batch"


@dataclass
class StateChange:
    """What a Batch or ECS state-change event says about one run.

    ``phase``: ``running``; ``succeeded`` / ``failed`` (a Batch job, after its last attempt);
    ``stopped`` (an ECS task: one attempt). ``attempt`` is the engine's attempt number if known.
    ``failed_to_start``: the engine could not start the container (a platform failure; nothing ran).
    """

    run_id: str
    external_id: str
    phase: str
    exit_code: int | None = None
    reason: str | None = None
    attempt: int | None = None
    engine: str = "batch"
    failed_to_start: bool = False
    #: the run's project, as its job or task says (runs are keyed by project on DynamoDB)
    project_id: str | None = None


# ---------------------------------------------------------------------------------------------
# what stores keep and answer about runs


def run_to_dict(run: Run) -> dict[str, Any]:
    """Everything of a run as plain JSON-able data (backends store it as they like)."""
    return {
        "id": run.id,
        "project_id": run.project_id,
        "environment": run.environment,
        "action_name": run.action_name,
        "action_version": run.action_version,
        "action_digest": run.action_digest,
        "invoked": run.invoked,
        "mode": run.mode.value,
        "status": run.status.value,
        "status_reason": run.status_reason,
        "attempt": run.attempt,
        "max_attempts": run.max_attempts,
        "parameters": run.parameters,
        "ret": run.ret,
        "exports": run.exports,
        "os": [[e.seq, e.k, e.ts, e.msg, e.err] for e in run.os],
        "error": run.error.to_dict() if run.error else None,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_ms": run.duration_ms,
        "external_user_id": run.external_user_id,
        "idempotency_key": run.idempotency_key,
        "timeout_seconds": run.timeout_seconds,
        "retry_interval_seconds": run.retry_interval_seconds,
        "options": run.options,
        "available_at": run.available_at,
        "lease_owner": run.lease_owner,
        "lease_until": run.lease_until,
        "lost_attempts": run.lost_attempts,
        "external_id": run.external_id,
    }


def run_from_dict(data: dict[str, Any]) -> Run:
    return Run(
        id=data["id"],
        project_id=data["project_id"],
        environment=data["environment"],
        action_name=data["action_name"],
        action_version=int(data["action_version"]),
        action_digest=data["action_digest"],
        invoked=data["invoked"],
        mode=Mode(data["mode"]),
        status=RunStatus(data["status"]),
        status_reason=data.get("status_reason"),
        attempt=int(data["attempt"]),
        max_attempts=int(data["max_attempts"]),
        parameters=data.get("parameters") or {},
        ret=data.get("ret"),
        exports=data.get("exports") or {},
        os=[LogEntry(seq=s, k=k, ts=ts, msg=m, err=e) for s, k, ts, m, e in data.get("os") or []],
        error=RunError.from_dict(data.get("error")),
        created_at=int(data["created_at"]),
        started_at=data.get("started_at"),
        finished_at=data.get("finished_at"),
        duration_ms=data.get("duration_ms"),
        external_user_id=data.get("external_user_id"),
        idempotency_key=data.get("idempotency_key"),
        timeout_seconds=int(data.get("timeout_seconds") or 0),
        retry_interval_seconds=float(data.get("retry_interval_seconds") or 0),
        options=data.get("options") or {},
        available_at=int(data.get("available_at") or 0),
        lease_owner=data.get("lease_owner"),
        lease_until=data.get("lease_until"),
        lost_attempts=int(data.get("lost_attempts") or 0),
        external_id=data.get("external_id"),
    )


@dataclass(frozen=True)
class RunSummary:
    """The few fields of a run that statistics need (see :meth:`hatchway.ports.RunRepo.run_summaries`)."""

    action_name: str
    invoked: str
    mode: str
    status: str
    created_at: int
    started_at: int | None
    finished_at: int | None
    duration_ms: int | None

    @classmethod
    def of(cls, run: Run) -> RunSummary:
        return cls(
            run.action_name,
            run.invoked,
            run.mode.value,
            run.status.value,
            run.created_at,
            run.started_at,
            run.finished_at,
            run.duration_ms,
        )


@dataclass(frozen=True)
class ActiveCount:
    """How many runs of one tenant are in one unfinished status."""

    project_id: str
    environment: str
    mode: str
    status: str
    count: int


#: called after a run is created (``src`` None) or changes status; see :meth:`hatchway.ports.RunRepo.observe`
RunObserver = Callable[[Run, "RunStatus | None"], None]


@dataclass
class SweepResult:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)
