"""The ports: what the use cases need from the world, as Protocols.

Adapters (store/, executors/, aws/, secrets/, blobs.py, net.py, observability/) implement them and
the composition root (wiring.py) plugs them in; use cases, api and compat import this module, never
an adapter. Repository methods carry the rules (transitions, leases, idempotency, cursors); backends
implement a handful of primitives under them (store/).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hatchway.domain.actions import ActionRecord, Resolved
from hatchway.domain.attempts import AttemptResult, Invocation
from hatchway.domain.files import BlobInfo
from hatchway.domain.pipelines.records import Execution, PipelineRecord
from hatchway.domain.pipelines.spec import PipelineSpec
from hatchway.domain.records import Document, IdempotencyOutcome, IdempotencyRecord, Page
from hatchway.domain.runs import (
    ActiveCount,
    LogEntry,
    Run,
    RunObserver,
    RunStatus,
    RunSummary,
    StateChange,
    SweepResult,
)
from hatchway.domain.spec import ActionSpec
from hatchway.domain.tenants import Project, TokenRecord

if TYPE_CHECKING:
    from hatchway.runtime.contract import OutputCollector
    from hatchway.runtime.redact import RedactorLike

# ---- time -------------------------------------------------------------------------------------


class Clock(Protocol):
    """Time and waiting, injected so idempotency waits, backoffs and leases are testable."""

    def time(self) -> float: ...  # epoch seconds

    def now_ms(self) -> int: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


# ---- repositories (one per aggregate) ---------------------------------------------------------


class TenantRepo(Protocol):
    def create_project(self, project: Project) -> Project: ...  # Conflict if it exists

    def ensure_project(self, project: Project) -> Project: ...

    def get_project(self, project_id: str) -> Project | None: ...

    def find_project(self, name: str) -> Project | None: ...  # by its name (unique per deployment)

    def list_projects(self, limit: int, cursor: str | None) -> Page[Project]: ...

    def put_token(self, token: TokenRecord) -> None: ...

    def get_token(self, token_id: str) -> TokenRecord | None: ...

    def list_tokens(self, project_id: str) -> list[TokenRecord]: ...

    def delete_token(self, project_id: str, token_id: str) -> bool: ...

    def touch_token(self, token_id: str, when: int) -> None: ...


class ActionRepo(Protocol):
    def register_version(
        self, project_id: str, environment: str, spec: dict[str, Any], digest: str
    ) -> tuple[ActionRecord, bool]: ...  # (record, created)

    def get_action(
        self,
        project_id: str,
        environment: str,
        name: str,
        version: int | None = None,
        digest: str | None = None,
        include_deleted: bool = False,
    ) -> ActionRecord | None: ...

    def list_actions(
        self, project_id: str, environment: str, limit: int, cursor: str | None, tag: str | None = None
    ) -> Page[ActionRecord]: ...

    def list_versions(
        self, project_id: str, environment: str, name: str, limit: int, cursor: str | None
    ) -> Page[ActionRecord]: ...

    def delete_action(self, project_id: str, environment: str, name: str) -> bool: ...


class RunRepo(Protocol):
    """Runs, their queue and leases, and their logs (one aggregate: one DynamoDB partition per run)."""

    def create_run(self, run: Run) -> Run: ...  # revision 0

    def get_run(self, run_id: str, project_id: str | None = None, environment: str | None = None) -> Run | None: ...

    def list_runs(
        self, project_id: str, environment: str, limit: int, cursor: str | None, filters: dict[str, str] | None = None
    ) -> Page[Run]: ...

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
    ) -> Run: ...  # TransitionConflict on a lost race

    def update_run(self, run_id: str, expect: RunStatus, **changes: Any) -> Run: ...

    def start_sync(self, run: Run) -> int | None: ...  # the revision written, or None: nothing yet

    def finish_sync(
        self,
        run: Run,
        revision: int | None,
        dst: RunStatus,
        entries: list[LogEntry],
        guard: Callable[[Run], bool] | None = None,
        **changes: Any,
    ) -> tuple[Run, list[LogEntry]]: ...  # TransitionConflict: settle as a cancel does

    def claim(self, owner: str, lease_seconds: float, now: int | None = None) -> Run | None: ...

    def claim_known(
        self, owner: str, lease_seconds: float, now: int | None = None
    ) -> tuple[Run, int | None] | None: ...  # and the revision written, where the backend tells it

    def ready_runs(self, now: int | None = None, limit: int = 100) -> list[Run]: ...

    def heartbeat(self, run_id: str, owner: str, lease_seconds: float) -> RunStatus | None: ...

    def sweep(self, max_lost_attempts: int, now: int | None = None, limit: int = 100) -> SweepResult: ...

    def remote_runs(self, created_before: int, limit: int = 500, after: str | None = None) -> list[Run]: ...

    def append_logs(self, run_id: str, entries: Iterable[LogEntry]) -> list[LogEntry]: ...

    def read_logs(self, run_id: str, after: int = 0, limit: int = 50) -> Page[LogEntry]: ...

    def run_summaries(
        self, project_id: str, environment: str, since_ms: int, limit: int = 20_000
    ) -> tuple[list[RunSummary], bool]: ...

    def active_counts(self, project_id: str | None = None, cap: int = 100_000) -> list[ActiveCount]: ...

    def observe(self, observer: RunObserver) -> None: ...


class IdempotencyRepo(Protocol):
    def idempotency_begin(
        self, scope: str, request_hash: str, run_id: str, in_progress_seconds: float, ttl_seconds: int
    ) -> IdempotencyOutcome: ...

    def idempotency_complete(
        self, record: IdempotencyRecord, response: dict[str, Any], code: int, ttl_seconds: int
    ) -> None: ...

    def idempotency_abandon(self, scope: str) -> None: ...


class DocumentRepo(Protocol):
    """Small named JSON documents: cache tags and answers, session types, stashes, callback secrets."""

    def put_document(self, document: Document) -> Document: ...

    def get_document(self, project_id: str, environment: str, kind: str, name: str) -> Document | None: ...

    def delete_document(self, project_id: str, environment: str, kind: str, name: str) -> bool: ...

    def list_documents(
        self, project_id: str, environment: str, kind: str, limit: int = 50, cursor: str | None = None
    ) -> Page[Document]: ...


class PipelineRepo(Protocol):
    def register_pipeline(
        self,
        project_id: str,
        environment: str,
        name: str,
        spec: dict[str, Any],
        digest: str,
        engine_ref: str | None = None,
    ) -> tuple[PipelineRecord, bool]: ...

    def get_pipeline(
        self, project_id: str, environment: str, name: str, version: int | None = None, include_deleted: bool = False
    ) -> PipelineRecord | None: ...

    def list_pipelines(
        self, project_id: str, environment: str, limit: int, cursor: str | None
    ) -> Page[PipelineRecord]: ...

    def delete_pipeline(self, project_id: str, environment: str, name: str) -> bool: ...

    def create_execution(self, execution: Execution) -> Execution: ...

    def get_execution(
        self, execution_id: str, project_id: str | None = None, environment: str | None = None
    ) -> Execution | None: ...

    def update_execution(self, execution_id: str, change: Callable[[Execution], Execution | None]) -> Execution: ...

    def list_executions(
        self,
        project_id: str,
        environment: str,
        pipeline: str | None,
        limit: int,
        cursor: str | None,
        status: str | None = None,
    ) -> Page[Execution]: ...

    def active_executions(self, engine: str, limit: int = 200) -> list[Execution]: ...


class Repos(Protocol):
    """One backend's repositories; what the composition root hands to the use cases."""

    @property
    def runs(self) -> RunRepo: ...

    @property
    def actions(self) -> ActionRepo: ...

    @property
    def tenants(self) -> TenantRepo: ...

    @property
    def idempotency(self) -> IdempotencyRepo: ...

    @property
    def documents(self) -> DocumentRepo: ...

    @property
    def pipelines(self) -> PipelineRepo: ...

    def ping(self) -> None: ...  # Unavailable when unreachable

    def close(self) -> None: ...


# ---- files and secrets ------------------------------------------------------------------------


class BlobStore(Protocol):
    """Keyed bytes, written and read as streams (project files, artifacts, stashes)."""

    def put_chunks(self, key: str, chunks: Iterable[bytes]) -> BlobInfo: ...  # atomic replace

    def put_file(self, key: str, source: Path) -> BlobInfo: ...

    def put_bytes(self, key: str, data: bytes) -> BlobInfo: ...

    def chunks(self, key: str) -> AbstractContextManager[Iterator[bytes] | None]: ...  # None: no such blob

    def delete_prefix(self, prefix: str) -> int: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int | None: ...  # the blob's length in bytes; None: no such blob

    def link(self, key: str, seconds: int) -> str | None: ...  # a URL reading it for a while (S3), or None

    def read(self, key: str) -> bytes | None: ...

    def export(self, key: str, target: Path) -> bool: ...  # into a new private file; False: no such blob

    def list(self, prefix: str) -> Iterator[BlobInfo]: ...  # last: its name shadows list[] below it


class SecretBox(Protocol):
    def encrypt(self, plaintext: str, project_id: str, environment: str, action: str | None = None) -> str: ...

    def decrypt(self, ciphertext: str, project_id: str, environment: str, action: str) -> str: ...

    def check(self) -> None: ...  # Unavailable if the master key cannot be used


class Redaction(Protocol):
    """Redactors for an attempt's secrets; while one is open its secrets are also kept out of logs."""

    def open(self, secrets: Sequence[str]) -> AbstractContextManager[RedactorLike]: ...


# ---- where actions run ------------------------------------------------------------------------


class AttemptExecutor(Protocol):
    """Runs one attempt here and returns how it ended: process, http, docker, lambda-local, lambda."""

    name: str
    stages_files: bool  # hands stashes/input files to the action

    def check(self, spec: ActionSpec, invoked: str) -> None: ...  # ValidationFailed

    def prepare(self, project_id: str, spec: ActionSpec) -> None: ...  # at registration; idempotent

    def release(self, project_id: str, spec: ActionSpec) -> None: ...  # the version was deleted; idempotent

    def execute(self, invocation: Invocation, collector: OutputCollector, cancel: threading.Event) -> AttemptResult: ...

    def recover(self) -> int: ...  # clean up after a crashed gateway

    def close(self) -> None: ...


class RunEngine(Protocol):
    """Submits, describes and stops whole runs that execute elsewhere: batch, ecs (from step C1)."""

    name: str

    def check(self, spec: ActionSpec, invoked: str) -> None: ...

    # a job/task definition and a task role per environment (their secrets are bound to it)
    def prepare(self, project_id: str, spec: ActionSpec, environment: str) -> None: ...

    def release(self, project_id: str, spec: ActionSpec, environment: str) -> None: ...  # version deleted

    def definition_name(self, project_id: str, spec: ActionSpec, environment: str) -> str: ...

    def submit(self, run: Run, spec: ActionSpec) -> str: ...  # the external id

    def terminate(self, run: Run, reason: str) -> None: ...  # a finished one is fine

    def describe(self, external_ids: list[str]) -> dict[str, StateChange | None]: ...

    def lost(self, run_id: str, external_id: str) -> StateChange: ...

    def close(self) -> None: ...


class Doorbell(Protocol):
    """Wake-ups between the processes of one store: a ring wakes every other listening process."""

    def ring(self) -> None: ...  # never raises: a wake-up is a hint

    def listen(self, wake: Callable[[int], None]) -> None: ...  # wake(count) from a thread, until close

    def close(self) -> None: ...


class RunDispatcher(Protocol):
    """Who is told that a run the gateway executes itself is waiting (a local pool, the runner function)."""

    def created(self, run: Run) -> None: ...

    def requeued(self, run: Run) -> None: ...


class ActionSource(Protocol):
    """Actions that are derived, not registered ("pipeline:<pipeline>/<step>")."""

    def resolve(
        self, project_id: str, environment: str, name: str, version: int | None, digest: str | None
    ) -> Resolved: ...


class PipelineEngine(Protocol):
    """Runs executions: "local" (the worker pool's advancer) or "stepfunctions"."""

    name: str

    def deploy(self, project_id: str, environment: str, spec: PipelineSpec) -> str | None: ...  # engine_ref

    def retire(self, engine_ref: str) -> None: ...

    def start(
        self, execution: Execution, record: PipelineRecord, previous_status: Callable[[], str | None]
    ) -> str | None: ...  # engine_ref when the engine runs the execution itself (it is INPROGRESS then)

    def approve(self, execution: Execution, gate: str) -> None: ...

    def terminate(self, execution: Execution) -> Execution: ...

    def refresh(self, execution: Execution) -> Execution: ...

    def step_runs(self, execution: Execution) -> dict[str, str]: ...  # state -> run id

    def wake(self, execution_id: str | None = None) -> None: ...


# ---- cross-cutting ----------------------------------------------------------------------------


class Telemetry(Protocol):
    def span(
        self, name: str, kind: str = "internal", parent: str | None = None, **attributes: Any
    ) -> AbstractContextManager[Any]: ...

    def traceparent(self) -> str | None: ...

    def log_context(self, **keys: Any) -> AbstractContextManager[None]: ...


class Metrics(Protocol):
    def observe(self, run: Run, previous: RunStatus | None) -> None: ...

    def exposition(
        self, active: Iterable[ActiveCount], workers: tuple[int, int] | None, project_id: str | None = None
    ) -> str: ...


class CallbackSender(Protocol):
    def enqueue(self, url: str, body: bytes, run_id: str, sign: Callable[[bytes, int], str]) -> None: ...

    def close(self) -> None: ...


if TYPE_CHECKING:  # mypy checks that the domain's clock answers the port
    from hatchway.domain.clock import SystemClock

    def _implements(clock: SystemClock) -> Clock:
        return clock
