"""The run lifecycle as data.

A run is one invocation of an action. Its status moves only along :data:`TRANSITIONS`; stores
apply a transition atomically (compare-and-set on the current status) and a lost race raises
:class:`~hatchway.errors.TransitionConflict` instead of overwriting. ``ENQUEUED`` is also where a
run waits between attempts, so a retry is ``INPROGRESS -> ENQUEUED`` with a later ``available_at``.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


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


class Mode(StrEnum):
    ASYNC = "async"
    SYNC = "sync"


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


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as an ISO 8601 UTC string (``...Z``)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# records


@dataclass
class LogEntry:
    """One line of an action's output, or a note of the gateway (``k == "system"``)."""

    k: str
    ts: int
    msg: str
    err: dict[str, str] | None = None
    seq: int = 0

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "k": self.k, "ts": self.ts, "msg": self.msg}
        if self.err:
            out["err"] = self.err
        return out


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


#: How many log entries of each end a run record carries in ``os``; the rest is in ``/logs``.
OS_PREVIEW_HEAD = 20
OS_PREVIEW_TAIL = 80


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
        """The API's run body; without ``os`` (the head and tail of its log) in list pages."""
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
            "parameters": self.parameters,
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


def preview(entries: list[LogEntry]) -> list[LogEntry]:
    """The head and tail of a log, as a run record carries it."""
    if len(entries) <= OS_PREVIEW_HEAD + OS_PREVIEW_TAIL:
        return list(entries)
    return entries[:OS_PREVIEW_HEAD] + entries[-OS_PREVIEW_TAIL:]
