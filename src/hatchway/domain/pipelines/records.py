"""What the store keeps about pipelines: definition versions and executions with their step states.

A definition is versioned like an action: each accepted change is a new immutable version with a
digest; an identical ``PUT`` is a no-op. An execution records the version it runs, its variables
(encrypted ones as ciphertexts), and one :class:`StepState` per step. The whole execution is one
record written with compare-and-set on its revision, like a run, so two advancers (a server and a
``hatchway worker``) never both win a change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from hatchway.domain.runs import iso, new_run_id


class StepStatus(StrEnum):
    """A step's status in one execution (Buddy's names)."""

    ENQUEUED = "ENQUEUED"
    INPROGRESS = "INPROGRESS"
    SUCCESSFUL = "SUCCESSFUL"
    FAILED = "FAILED"
    WARNING = "WARNING"
    SKIPPED = "SKIPPED"
    NOT_EXECUTED = "NOT_EXECUTED"
    TERMINATED = "TERMINATED"
    WAITING_FOR_APPROVE = "WAITING_FOR_APPROVE"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STEP


#: a step's status as Buddy's step view names it (``last_execution_status``): the reference's enum
#: has no WARNING (the step failed and its error was ignored) and calls an approval wait "apply"
BUDDY_LAST_STATUS = {"WARNING": "FAILED", "WAITING_FOR_APPROVE": "WAITING_FOR_APPLY"}
LAST_EXECUTION_STATUSES = (
    "INPROGRESS", "ENQUEUED", "TERMINATED", "SUCCESSFUL", "FAILED", "INITIAL", "NOT_EXECUTED", "SKIPPED",
    "TERMINATING", "WAITING_FOR_APPLY", "WAITING_FOR_VARIABLES", "WAITING_FOR_SETTABLE_VARIABLES",
    "WAITING_FOR_VT_SESSION",
)  # fmt: skip


FINAL_STEP = frozenset(
    {
        StepStatus.SUCCESSFUL,
        StepStatus.FAILED,
        StepStatus.WARNING,
        StepStatus.SKIPPED,
        StepStatus.NOT_EXECUTED,
        StepStatus.TERMINATED,
    }
)


class ExecutionStatus(StrEnum):
    """Where an execution is. WARNING: it succeeded, but a step's error was ignored."""

    ENQUEUED = "ENQUEUED"
    INPROGRESS = "INPROGRESS"
    WAITING_FOR_APPROVE = "WAITING_FOR_APPROVE"
    TERMINATING = "TERMINATING"
    SUCCESSFUL = "SUCCESSFUL"
    WARNING = "WARNING"
    FAILED = "FAILED"
    TERMINATED = "TERMINATED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_EXECUTION


TERMINAL_EXECUTION = frozenset(
    {ExecutionStatus.SUCCESSFUL, ExecutionStatus.WARNING, ExecutionStatus.FAILED, ExecutionStatus.TERMINATED}
)


def new_execution_id(now_ms: int | None = None) -> str:
    """``pex_`` + 26 characters that sort by creation time."""
    return "pex_" + new_run_id(now_ms)[len("run_") :]


@dataclass
class PipelineRecord:
    """One immutable version of a pipeline definition (secret values as ciphertexts)."""

    project_id: str
    environment: str
    name: str
    version: int
    digest: str
    created_at: int
    spec: dict[str, Any]
    #: where the definition runs outside this process (the state machine's ARN on AWS)
    engine_ref: str | None = None


@dataclass(frozen=True)
class StepView:
    """One step of a pipeline's latest version, and how it ended in the last execution that has it
    (``INITIAL`` when none has). ``step`` is its definition with secret values hidden."""

    pipeline: str
    version: int
    step: dict[str, Any]
    last_execution_status: str


@dataclass
class PipelineHead:
    """Points at a pipeline's latest version; ``deleted`` hides it but keeps its versions."""

    project_id: str
    environment: str
    name: str
    latest_version: int
    deleted: bool = False


@dataclass
class StepState:
    """One step of one execution."""

    name: str
    status: StepStatus = StepStatus.ENQUEUED
    run_id: str | None = None
    attempt: int = 0
    started_at: int | None = None
    finished_at: int | None = None
    status_reason: str | None = None
    #: a sync step waits until then before its next attempt
    available_at: int | None = None
    #: the engine asked for the step's run to stop (terminate, or a hard-parallel sibling failed)
    cancel_requested: bool = False
    approved_by: str | None = None
    #: attempts of a sync step cut off by a stopped gateway (they do not use its retries)
    lost_attempts: int = 0

    @property
    def is_started(self) -> bool:
        return self.run_id is not None or self.status != StepStatus.ENQUEUED

    def finish(self, status: StepStatus, now: int, reason: str | None = None) -> None:
        self.status = status
        self.finished_at = self.finished_at or now
        if reason is not None:
            self.status_reason = reason


@dataclass
class Execution:
    """One execution of one pipeline version."""

    id: str
    project_id: str
    environment: str
    pipeline: str
    version: int
    status: ExecutionStatus = ExecutionStatus.ENQUEUED
    status_reason: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    steps: list[StepState] = field(default_factory=list)
    #: the main section's outcome, once known (SUCCESSFUL | WARNING | FAILED | TERMINATED)
    outcome: str | None = None
    #: the status of the pipeline's previous finished execution (first failure, back to success)
    previous_status: str | None = None
    terminate_requested: bool = False
    created_at: int = 0
    started_at: int | None = None
    finished_at: int | None = None
    triggered_by: str | None = None
    #: "local" (the worker pool advances it) or "stepfunctions" (a state machine runs it)
    engine: str = "local"
    engine_ref: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def step(self, name: str) -> StepState:
        for state in self.steps:
            if state.name == name:
                return state
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Execution:
        steps = [StepState(**{**s, "status": StepStatus(s["status"])}) for s in data.get("steps") or []]
        return cls(**{**data, "status": ExecutionStatus(data["status"]), "steps": steps})

    def to_api(self) -> dict[str, Any]:
        """The API's execution body; ``variables`` must already be presented (secrets hidden)."""
        return {
            "id": self.id,
            "project_id": self.project_id,
            "environment": self.environment,
            "pipeline": self.pipeline,
            "version": self.version,
            "status": self.status.value,
            "status_reason": self.status_reason,
            "outcome": self.outcome,
            "variables": self.variables,
            "steps": [
                {
                    "name": s.name,
                    "status": s.status.value,
                    "run_id": s.run_id,
                    "attempt": s.attempt,
                    "started_at": iso(s.started_at),
                    "finished_at": iso(s.finished_at),
                    "status_reason": s.status_reason,
                    **({"approved_by": s.approved_by} if s.approved_by else {}),
                }
                for s in self.steps
            ],
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "triggered_by": self.triggered_by,
        }
