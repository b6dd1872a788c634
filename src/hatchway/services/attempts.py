"""One attempt of a run: what a worker does with a claimed run, and what a sync call waits for.

An attempt decrypts the run's secret values (kept out of logs and outputs while it runs), stages
its input files and stash, hands an :class:`~hatchway.domain.attempts.Invocation` to the
executor :class:`~hatchway.services.placement.Placement` picks, judges how it ended
(:func:`~hatchway.domain.attempts.judge`) and records the end: a terminal status, or back to the
queue for a retry. The end is written only while the run is still this attempt's (fencing): a
cancel or a lost lease meanwhile is settled as such.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hatchway.config import Settings
from hatchway.domain import parameters as params
from hatchway.domain.actions import Resolved
from hatchway.domain.attempts import OUT_OF_MEMORY, AttemptResult, Invocation, Verdict, judge
from hatchway.domain.parameters import is_ciphertext
from hatchway.domain.runs import LogEntry, Mode, Run, RunError, RunStatus, backoff_seconds, preview, retry_delay_seconds
from hatchway.domain.spec import RUN_ACTION, ActionSpec, is_secret_name
from hatchway.errors import (
    BadRequest,
    ExecutionFailed,
    HatchwayError,
    NotFound,
    SecretBindingError,
    TransitionConflict,
    Unavailable,
    new_exception_id,
)
from hatchway.faults import CrashPoints
from hatchway.ports import AttemptExecutor, Clock, Redaction, RunDispatcher, RunRepo, SecretBox, Telemetry
from hatchway.runtime.contract import OutputCollector, Workspace
from hatchway.services.actions import ActionService
from hatchway.services.extras import Callbacks
from hatchway.services.files import FileService
from hatchway.services.placement import Placement

log = logging.getLogger("hatchway")

_END_REASONS = {
    "user": "the action reported a user error",
    "application": "the action failed",
    "timeout": "the action timed out",
    "platform": "the gateway could not run the action",
    "unavailable": "a dependency was unavailable; the action was not started",
}


#: failures of the platform, not of the action: nothing of the action ran, or its host went away
PLATFORM_KINDS = frozenset({"platform", "unavailable"})


def is_platform_failure(error: RunError | None) -> bool:
    """Whether an attempt failed through the platform (an engine, the gateway), not the action."""
    return error is not None and error.kind in PLATFORM_KINDS


def platform_answer(run: Run, error: RunError, spec: ActionSpec, retry_seconds: float) -> HatchwayError | None:
    """A failed sync call's answer when the failure was not the action's own doing, else None.

    The engine down or a pull that broke: 503 with ``Retry-After`` (nothing was started). Another
    platform failure: a 500 saying the platform could not run the action. Out of memory: a 500
    saying so, with the limit. Engines' own words (which may carry host paths) stay in the run's
    record and the log: the client gets the message's headline.
    """
    exception_id = error.exception_id or new_exception_id()
    quote = f"; quote exceptionId {exception_id} when you report it"
    extra = {"run_id": run.id, "project_id": run.project_id, "exceptionId": exception_id, "reason": error.message}
    if error.kind == "unavailable":
        log.warning("platform unavailable", extra=extra)
        return Unavailable(
            _headline(error.message) + "; nothing was started, try again shortly", max(1, math.ceil(retry_seconds))
        )
    if error.kind == "platform":
        log.error("platform failure", extra=extra)
        return ExecutionFailed(f"the platform could not run the action: {_headline(error.message)}{quote}", run.id,
                               exception_id)  # fmt: skip
    if error.kind == "application" and error.message == OUT_OF_MEMORY:  # logged as the attempt ended
        memory = spec.compute_requirements.memory
        return ExecutionFailed(
            f"the action ran out of memory (its limit, compute_requirements.memory, is {memory} MiB){quote}",
            run.id,
            exception_id,
        )
    return None


def _headline(message: str) -> str:
    """A failure's message up to its details (an engine's parenthesised or quoted reason)."""
    for cut in (" (", ": ", "; "):
        message = message.split(cut, 1)[0]
    return message


def end_reason(verdict: Verdict) -> str | None:
    return _END_REASONS.get(verdict.error.kind, verdict.error.kind) if verdict.error else None


def _sync_retry(verdict: Verdict) -> bool:
    """Whether a sync call tries again: after a platform or application error - never a user error
    (exit 1), a timeout (the call's budget is spent) or an unavailable dependency."""
    return verdict.error is not None and verdict.error.kind in ("platform", "application")


def first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line[:200]


def log_app_error(run: Run, error: RunError) -> None:
    log.error(
        "application error",
        extra={"run_id": run.id, "project_id": run.project_id, "environment": run.environment,
               "exceptionId": error.exception_id, "reason": error.message},
    )  # fmt: skip


@dataclass
class AttemptEnd:
    """How an attempt ended: the run as recorded, the verdict, and (numbered) log entries."""

    run: Run
    verdict: Verdict
    entries: list[LogEntry]


class AttemptService:
    """Attempts of runs, in this process; cancels of the attempts running here."""

    def __init__(
        self,
        runs: RunRepo,
        actions: ActionService,
        placement: Placement,
        box: SecretBox,
        redaction: Redaction,
        files: FileService,
        callbacks: Callbacks,
        dispatcher: RunDispatcher,
        telemetry: Telemetry,
        clock: Clock,
        crash_points: CrashPoints,
        settings: Settings,
        owner: str,
    ) -> None:
        self.runs = runs
        self.actions = actions
        self.placement = placement
        self.box = box
        self.redaction = redaction
        self.files = files
        self.callbacks = callbacks
        self.dispatcher = dispatcher
        self.telemetry = telemetry
        self.clock = clock
        self.crash_points = crash_points
        self.settings = settings
        #: this process, as "<pid>-<start time>": names its staging directories (a name no later
        #: process reuses, so a start can tell a crashed process's leftovers)
        self.owner = owner
        self._active: dict[str, threading.Event] = {}
        self._active_lock = threading.Lock()

    @property
    def staging(self) -> Path:
        """Where attempts' input files and stashes are written out in the clear while they run."""
        return self.settings.work_dir / ".stage"

    # ---- entry points ----------------------------------------------------------------------

    def execute_claimed(self, run: Run, revision: int | None = None) -> Run:
        """Run one attempt of a run a worker claimed (status INPROGRESS) and record the outcome;
        ``revision``: what the claim wrote, if known (the end is then written without a read while
        nobody changed the run since)."""
        try:
            resolved = self.actions.resolve(
                run.project_id, run.environment, run.action_name, run.action_version, None, include_deleted=True
            )
        except (NotFound, BadRequest) as exc:
            verdict = Verdict(RunStatus.FAILED, RunError("platform", exc.message))
            return self._finish(run, verdict, [], revision=revision)
        with self._observed(run):
            return self._attempt(run, resolved, float(max(0.0, run.timeout_seconds)), revision).run

    def execute_sync(self, run: Run, resolved: Resolved, limit: float, revision: int | None) -> AttemptEnd:
        """The one attempt of a sync call (on record since ``start_sync``, which answered ``revision``)."""
        with self._observed(run):
            return self._attempt(run, resolved, limit, revision)

    def cancel_local(self, run_id: str) -> None:
        """Stop the attempt of ``run_id`` running in this process, if one is (a cancel, a lost lease,
        a shutdown); its end is then settled by what the run's record says."""
        with self._active_lock:
            event = self._active.get(run_id)
        if event is not None:
            event.set()

    def is_active(self, run_id: str) -> bool:
        with self._active_lock:
            return run_id in self._active

    # ---- one attempt -----------------------------------------------------------------------

    def _attempt(self, run: Run, resolved: Resolved, limit: float, revision: int | None = None) -> AttemptEnd:
        """One attempt and its outcome on record; ``revision``: what ``start_sync`` or the claim wrote."""
        cancel = threading.Event()
        with self._active_lock:
            self._active[run.id] = cancel
        flush = None
        redactions = contextlib.ExitStack()
        staged: Path | None = None
        #: an async run's last log lines, flushed when its collector closes: written with its end
        last_lines: list[LogEntry] = []
        closing = False
        if run.mode == Mode.ASYNC:

            def flush(batch: list[LogEntry]) -> None:
                if closing:
                    last_lines.extend(batch)
                else:
                    self.runs.append_logs(run.id, batch)

        try:
            try:
                most = self.settings.limits.max_secret_bytes
                plain, secret_values = open_secrets(self.box, most, run, run.parameters, "parameters")
                payload, input_secrets = open_secrets(self.box, most, run, run.options.get("input"), "input")
            except SecretBindingError as exc:
                verdict = Verdict(RunStatus.FAILED, RunError("user", exc.message, None, 400))
                return AttemptEnd(self._finish(run, verdict, [], revision=revision), verdict, [])
            except Unavailable as exc:
                verdict = Verdict(RunStatus.FAILED, RunError("unavailable", exc.message, new_exception_id(), 503))
                return AttemptEnd(self._finish(run, verdict, [], revision=revision), verdict, [])
            secret_values += input_secrets
            redactor = redactions.enter_context(self.redaction.open(secret_values))
            collector = OutputCollector(
                Mode.ASYNC if run.invoked == RUN_ACTION else Mode.SYNC,
                # redacting the output may take no longer than the action may run: past its
                # deadline (and the kill grace) what is left of a text is hidden, not searched
                redactor.until(self.clock.monotonic() + limit + self.settings.runs.kill_grace_seconds),
                max_log_bytes=self.settings.executors.max_log_bytes,
                max_stdout_bytes=self.settings.executors.max_sync_stdout_bytes,
                flush=flush,
            )
            if run.mode == Mode.ASYNC and run.attempt > 1:
                collector.system(f"attempt {run.attempt} of {run.max_attempts + run.lost_attempts}")
            invocation = Invocation(
                run_id=run.id,
                project_id=run.project_id,
                environment=run.environment,
                action_name=run.action_name,
                version=run.action_version,
                digest=run.action_digest,
                invoked=run.invoked,
                mode=run.mode,
                spec=resolved.spec,
                parameters=plain,
                attempt=run.attempt,
                deadline=self.clock.time() + limit,
                redactor=redactor,
                retries=max(0, run.max_attempts - 1) if run.mode == Mode.SYNC else 0,
                pipeline_execution=pipeline_execution_of(run),
            )
            retries_itself = False

            def once() -> AttemptResult:
                nonlocal staged, retries_itself
                try:
                    if staged is None:
                        staged = self._stage(run, resolved, invocation, payload)
                    executor = self.placement.executor_for(resolved.spec, run.mode)
                    retries_itself = getattr(executor, "retries_itself", False)
                    return self._execute(executor, invocation, collector, cancel)
                except Exception as exc:  # an executor bug or an unreachable engine: the run must still end
                    exception_id = new_exception_id()
                    log.exception("executor failed", extra={"run_id": run.id, "exceptionId": exception_id})
                    return AttemptResult(platform_error=f"the executor failed ({type(exc).__name__})")

            execution = once()
            closing = True
            collector.close()
            verdict = judge(execution, collector, invocation.output_mode, limit)
            # a sync call's retries are attempts within the call (an executor that retries by itself,
            # HTTP, had them already): after a platform or application error, within the call's budget
            while (
                run.mode == Mode.SYNC
                and not retries_itself
                and _sync_retry(verdict)
                and invocation.attempt < run.max_attempts
                and invocation.seconds_left > 0
                and not cancel.wait(min(run.retry_interval_seconds, max(0.0, invocation.seconds_left)))
                and invocation.seconds_left > 0
            ):
                why = first_line(verdict.error.message if verdict.error else "failed")
                invocation.attempt += 1
                collector.next_attempt(f"attempt {invocation.attempt - 1} failed ({why}); "
                                       f"attempt {invocation.attempt} of {run.max_attempts}")  # fmt: skip
                execution = once()
                collector.close()
                verdict = judge(execution, collector, invocation.output_mode, limit)
            if verdict.error and verdict.error.kind == "application":
                log_app_error(run, verdict.error)
            entries = collector.entries
            self.crash_points.reach("before_result", run.id)
            final = self._finish(run, verdict, entries, execution.duration_ms, revision, last_lines, invocation.attempt)
            return AttemptEnd(final, verdict, entries)
        finally:
            if last_lines:  # the end was not written (a failure on the way): the lines are kept
                self.runs.append_logs(run.id, last_lines)
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)
            redactions.close()
            with self._active_lock:
                self._active.pop(run.id, None)

    def _stage(self, run: Run, resolved: Resolved, invocation: Invocation, payload: Any) -> Path | None:
        """What the attempt finds beside its parameters: input, input files, stash, artifacts.

        Input files and a stash are kept encrypted (or in S3), so they are written out in the
        clear to a private directory of this attempt (named by this process, removed when the
        attempt ends, or by the next start after a crash), from which the executor copies them
        into the workspace. Returns that directory, if one was made.
        """
        options = run.options
        if payload is not None:
            invocation.extra_config["input"] = payload
        for key, value in (options.get("config") or {}).items():
            invocation.extra_config.setdefault(key, value)
        staged: Path | None = None
        inputs = options.get("inputs") if resolved.spec.requires_downloaded_inputs is not False else None
        stash_id = options.get("stash_id")
        if inputs or stash_id:
            staged = self.staging / f"{self.owner}-{run.id}-{run.attempt}"
            staged.mkdir(parents=True, mode=0o700)
        for path in inputs or ():
            local = staged / "in" / path  # type: ignore[operator]
            if self.files.export_input(run.project_id, run.environment, path, local):
                invocation.input_files.append((path, local))
        stashes = self.files.stashes
        if stash_id:
            scratch = staged / "tmp"  # type: ignore[operator]
            invocation.tmp_source = stashes.directory(run.project_id, run.environment, stash_id, scratch)

        def keep(path: Path) -> None:
            workspace = Workspace(path.parent, path.name)
            if stash_id:
                stashes.save(run.project_id, run.environment, stash_id, workspace.files("tmp"), invocation.redactor)
            if run.invoked == RUN_ACTION:
                self.files.keep_artifacts(run.project_id, run.id, workspace, invocation.redactor)

        invocation.before_cleanup = keep
        return staged

    @contextlib.contextmanager
    def _observed(self, run: Run) -> Iterator[None]:
        """An attempt's log correlation and span; an async run continues its submitter's trace."""
        parent = run.options.get("traceparent") if run.mode == Mode.ASYNC else None
        telemetry = self.telemetry
        with (
            telemetry.log_context(run_id=run.id, project_id=run.project_id, environment=run.environment),
            telemetry.span(f"run {run.action_name} {run.invoked}", "consumer" if parent else "internal", parent,
                           **{"hatchway.run_id": run.id, "hatchway.action": run.action_name,
                              "hatchway.invoked": run.invoked, "hatchway.attempt": run.attempt,
                              "hatchway.mode": run.mode.value}),
        ):  # fmt: skip
            yield

    def _execute(
        self, executor: AttemptExecutor, invocation: Invocation, collector: OutputCollector, cancel: threading.Event
    ) -> AttemptResult:
        """Run the attempt on the executor, the action process in a span of its own whose context
        the action gets as ``TRACEPARENT``."""
        telemetry = self.telemetry
        with (
            telemetry.span(f"executor {executor.name}", "internal", None, **{"hatchway.executor": executor.name}),
            telemetry.span(f"action {invocation.action_name} {invocation.invoked}", "internal") as process,
        ):
            traceparent = telemetry.traceparent()
            if traceparent:
                invocation.extra_env["TRACEPARENT"] = traceparent
            execution = executor.execute(invocation, collector, cancel)
            if process is not None and hasattr(process, "set_attribute"):
                process.set_attribute("process.exit_code", -1 if execution.exit_code is None else execution.exit_code)
                process.set_attribute("hatchway.timed_out", execution.timed_out)
            return execution

    # ---- recording the end -------------------------------------------------------------------

    def _finish(
        self,
        run: Run,
        verdict: Verdict,
        entries: list[LogEntry],
        duration_ms: int | None = None,
        revision: int | None = None,
        last_lines: list[LogEntry] | None = None,
        sync_attempts: int = 1,
    ) -> Run:
        """Record the end of an attempt: terminal status, or back to the queue for a retry; a sync
        call's log too (``entries`` come back numbered) and how many attempts it made. ``revision``:
        the run's as this attempt began (``start_sync`` or the claim wrote it), if known.
        ``last_lines``: an async run's log lines not yet stored, written with its end (taken from the list)."""
        now = self.clock.now_ms()
        fields: dict[str, Any] = {
            "ret": verdict.ret,
            "exports": verdict.exports,
            "os": preview(entries) if entries else run.os,
            "error": verdict.error,
            "lease_owner": None,
            "lease_until": None,
            "duration_ms": duration_ms if duration_ms is not None else run.duration_ms,
        }

        def still_ours(current: Run) -> bool:
            # fencing: an attempt whose lease was swept and claimed again must not write its outcome
            return current.attempt == run.attempt and current.lease_owner == run.lease_owner

        if run.mode == Mode.SYNC:
            if sync_attempts > run.attempt:
                fields["attempt"] = sync_attempts
            # on record since start_sync (unless a cancel or the sweeper moved it since, its end is
            # written without reading it back), or written now whole: the backend's choice
            try:
                final, numbered = self.runs.finish_sync(
                    run, revision, verdict.status, entries, still_ours,
                    finished_at=now, status_reason=end_reason(verdict), **fields,
                )  # fmt: skip
            except TransitionConflict:
                return self._settle_cancel(run, fields, now)
            entries[:] = numbered
            self.callbacks.after_terminal(final)
            return final
        logs: list[LogEntry] = []
        if last_lines:
            logs, last_lines[:] = list(last_lines), []
        if verdict.status == RunStatus.TERMINATED:
            self.runs.append_logs(run.id, logs)
            return self._settle_cancel(run, fields, now)
        # while the store holds the claim's revision nobody changed the run since: no read back
        known = (run, revision) if revision is not None else None
        own_attempts = run.attempt - run.lost_attempts
        retry: dict[str, Any] | None = None
        if verdict.status == RunStatus.FAILED and verdict.is_retryable:
            settings = self.settings
            if is_platform_failure(verdict.error) and run.lost_attempts < settings.runs.max_lost_attempts:
                # the platform failed the attempt (engine down, image not pulled, container not
                # started): like a lost worker it uses the lost-attempt allowance, not the action's
                # retries (an action that may not be retried is still retried here)
                lost = run.lost_attempts + 1
                delay = backoff_seconds(settings.runs.platform_retry_seconds, lost, settings.runs.max_backoff_seconds)
                retry = {"lost_attempts": lost}
            elif own_attempts < run.max_attempts:
                delay = retry_delay_seconds(run, own_attempts, settings.runs.max_backoff_seconds)
                retry = {}
        if retry is not None:
            why = verdict.error.message if verdict.error else "failed"
            try:
                return self.runs.transition(
                    run.id,
                    RunStatus.INPROGRESS,
                    RunStatus.ENQUEUED,
                    still_ours,
                    known=known,
                    logs=logs,
                    available_at=now + int(delay * 1000),
                    status_reason=f"attempt {run.attempt} failed ({first_line(why)}); retrying in {delay:g} s",
                    **fields,
                    **retry,
                )
            except TransitionConflict:
                return self._settle_cancel(run, fields, now)
            finally:
                self.dispatcher.requeued(run)
        try:
            final = self.runs.transition(
                run.id, RunStatus.INPROGRESS, verdict.status, still_ours, known=known, logs=logs,
                finished_at=now, status_reason=end_reason(verdict), **fields,
            )  # fmt: skip
        except TransitionConflict:
            return self._settle_cancel(run, fields, now)
        self.callbacks.after_terminal(final)
        return final

    def _settle_cancel(self, run: Run, fields: dict[str, Any], now: int) -> Run:
        """The attempt ended while the run was no longer simply ours: a cancel, a release, or a lost lease."""
        current = self.runs.get_run(run.id)
        if current is None:
            return run
        try:
            if current.status == RunStatus.TERMINATING:
                final = self.runs.transition(
                    run.id, RunStatus.TERMINATING, RunStatus.TERMINATED, finished_at=now,
                    status_reason="cancelled", **{**fields, "error": RunError("cancelled", "the run was cancelled")},
                )  # fmt: skip
                self.callbacks.after_terminal(final)
                return final
            is_ours = (current.lease_owner, current.attempt) == (run.lease_owner, run.attempt)
            if current.status == RunStatus.INPROGRESS and is_ours:
                # stopped by this gateway itself (shutdown): hand the run to the next worker, and
                # do not count the interrupted attempt against the run's retry budget
                return self.runs.transition(
                    run.id, RunStatus.INPROGRESS, RunStatus.ENQUEUED, available_at=now,
                    lost_attempts=current.lost_attempts + 1,
                    status_reason=f"attempt {run.attempt} was interrupted by a shutdown; queued again",
                    lease_owner=None, lease_until=None,
                )  # fmt: skip
        except TransitionConflict:
            return self.runs.get_run(run.id) or current
        # another worker or the sweeper owns the run now; this attempt's outcome is dropped
        return current


def open_secrets(box: SecretBox, max_secret_bytes: int, run: Run, value: Any, where: str) -> tuple[Any, list[str]]:
    """Decrypt every ``#`` value of ``value``; the plain data and the secrets (for redaction).

    A ciphertext made while a limit was higher may hold a secret over today's limits: the run
    then fails as a user error, as it does for a ciphertext that does not belong here.
    """
    found: list[str] = []

    def unseal(text: str) -> str:
        if not is_ciphertext(text):
            found.append(text)
            return text
        try:
            plain = box.decrypt(text, run.project_id, run.environment, run.action_name)
        except SecretBindingError:
            raise SecretBindingError("the ciphertext belongs to another project, environment or action") from None
        if len(plain.encode()) > max_secret_bytes:
            raise SecretBindingError(f"the secret is larger than {max_secret_bytes} bytes")
        found.append(plain)
        return plain

    def opened_at(label: str, item: Any, is_secret: bool) -> Any:
        try:
            return unseal(item) if is_secret else params.map_secrets(item, unseal)
        except SecretBindingError as exc:
            raise SecretBindingError(f"{label}: {exc.message}") from None

    if not isinstance(value, dict):
        return opened_at(where, value, False), found
    opened = {}
    for key, item in value.items():
        if is_secret_name(key) and isinstance(item, str):
            opened[key] = opened_at(f"parameter {key!r}" if where == "parameters" else f"{where}.{key}", item, True)
        else:
            opened[key] = opened_at(where, item, False)
    return opened, found


def pipeline_execution_of(run: Run) -> str | None:
    """The execution a pipeline step's run belongs to (the gateway set it; no client can)."""
    link = run.options.get("pipeline")
    execution = link.get("execution_id") if isinstance(link, dict) else None
    return execution if isinstance(execution, str) else None
