"""Runs on remote engines (AWS Batch, ECS): their state-change events, and the sweep for lost ones.

:meth:`RemoteRuns.handle_event` applies "Batch Job State Change" and "ECS Task State Change" events
(parsed by the engine's adapter) with the run repository's transition rules. Events are idempotent
and may arrive out of order or late: an event about another job or task than the run's current one
is ignored, a terminal run is left alone, RUNNING only moves a run nobody has claimed yet, and an
end settles only what the container could not record itself (it never started, it was killed, it
was cancelled). A job or task that ended well (exit 0) with its run not over did not go
through hatchway's adapter, which records the end before it exits: the run fails with a platform
error saying so. After an ECS attempt that asked for a retry, the next task is started here.

:meth:`RemoteRuns.sweep_remote` settles runs whose events never came (EventBridge gave up, a rule
was missing for a while): every run a job or task has held for longer than a bound is looked up
with the engine (``DescribeJobs`` / ``DescribeTasks``), whose answers carry the same detail as the
events, and applied through the same :meth:`RemoteRuns.apply_state_change`. A job or task the
engine no longer knows ended without telling: the run fails (or, on ECS, gets its next attempt).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from hatchway.domain.runs import Run, RunError, RunStatus, StateChange, owner_engine
from hatchway.errors import Conflict, NotFound, TransitionConflict, new_exception_id
from hatchway.ports import Clock, RunRepo
from hatchway.runtime.remote import ADAPTER_MODULE, RETRY_EXIT_CODE
from hatchway.services.actions import ActionService
from hatchway.services.placement import Placement

log = logging.getLogger("hatchway.remote")


@dataclass
class RemoteSweep:
    """What one pass of :meth:`RemoteRuns.sweep_remote` found: runs looked up, and those it moved."""

    checked: int = 0
    settled: list[str] = field(default_factory=list)
    failures: int = 0


class RemoteRuns:
    """State changes of runs that Batch jobs and ECS tasks execute."""

    def __init__(
        self,
        runs: RunRepo,
        actions: ActionService,
        placement: Placement,
        clock: Clock,
        parse_event: Callable[[dict[str, Any]], StateChange | None],
        max_lost_attempts: int = 3,
    ) -> None:
        self.runs = runs
        self.actions = actions
        self.placement = placement
        self.clock = clock
        self.parse_event = parse_event
        #: attempts the platform may fail (a task that never started) beside the run's own
        self.max_lost_attempts = max_lost_attempts

    def handle_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Apply one EventBridge event; a summary for the function's log."""
        change = self.parse_event(event)
        if change is None:
            return {"ignored": "not a state change of a hatchway run"}
        run = self.apply_state_change(change)
        if run is None:
            return {"ignored": f"{change.run_id} is not run by {change.external_id}", "run_id": change.run_id}
        return {"run_id": run.id, "status": run.status.value}

    def apply_state_change(self, change: StateChange) -> Run | None:
        """Move a run as ``change`` says, by the transition rules; None if the change is not about its
        current job or task. Applying the same change twice, or an older one later, changes nothing."""
        for _ in range(20):
            run = self.runs.get_run(change.run_id, change.project_id)
            if run is None or run.external_id != change.external_id:
                return None
            if run.is_terminal:
                return run
            try:
                return self._apply(run, change)
            except TransitionConflict:
                continue  # the container or another event moved it meanwhile: look again
        raise Conflict(f"run {change.run_id} is changing too fast to apply a state change")

    def _apply(self, run: Run, change: StateChange) -> Run:
        runs = self.runs
        now = self.clock.now_ms()
        if change.phase == "running":
            is_new_attempt = change.attempt is None or change.attempt > run.attempt
            if run.status == RunStatus.ENQUEUED and run.lease_owner is None and is_new_attempt:
                return runs.transition(
                    run.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS,
                    started_at=run.started_at or now, status_reason="the container started",
                )  # fmt: skip
            return run
        if run.status == RunStatus.TERMINATING:
            return runs.transition(
                run.id, RunStatus.TERMINATING, RunStatus.TERMINATED, finished_at=now, status_reason="cancelled",
                lease_owner=None, error=RunError("cancelled", "the run was cancelled"),
            )  # fmt: skip
        if change.phase == "stopped" and change.exit_code != 0:
            retry = _another_task(run, change, self.max_lost_attempts)
            if retry is not None:
                return self._next_task(run, change, retry)
        error = _unrecorded_success(run, change) if _succeeded(change) else _remote_error(change)
        log.error(
            "remote run failed",
            extra={"run_id": run.id, "exceptionId": error.exception_id, "reason": change.reason,
                   "exit": change.exit_code},
        )  # fmt: skip
        return runs.transition(
            run.id, run.status, RunStatus.FAILED, finished_at=now, lease_owner=None, error=error,
            status_reason="the run ended without recording a result",
        )  # fmt: skip

    def _next_task(self, run: Run, change: StateChange, counted: dict[str, Any]) -> Run:
        """Start the run's next task; ``counted``: how the ended one is counted (lost attempts)."""
        runs = self.runs
        if run.status == RunStatus.INPROGRESS:
            run = runs.transition(
                run.id, RunStatus.INPROGRESS, RunStatus.ENQUEUED, lease_owner=None, available_at=self.clock.now_ms(),
                status_reason=f"attempt {counted.get('attempt', run.attempt)} ended without a result "
                f"({_short(change.reason)}); retrying",
                **counted,
            )  # fmt: skip
            counted = {}
        elif counted:
            counted["status_reason"] = f"attempt {counted['attempt']} did not start ({_short(change.reason)}); retrying"
        try:
            resolved = self.actions.resolve(
                run.project_id, run.environment, run.action_name, run.action_version, include_deleted=True
            )
        except NotFound as exc:
            return runs.transition(
                run.id, RunStatus.ENQUEUED, RunStatus.FAILED, finished_at=self.clock.now_ms(),
                error=RunError("platform", exc.message), status_reason="the action version is gone",
            )  # fmt: skip
        engine = self.placement.engine_named(owner_engine(change.external_id))
        task = engine.submit(run, resolved.spec)
        try:
            return runs.update_run(run.id, RunStatus.ENQUEUED, external_id=task, **counted)
        except TransitionConflict:
            engine.terminate(replace(run, external_id=task), "the run moved on")
            raise

    def sweep_remote(
        self, stale_seconds: float, now: int | None = None, limit: int = 500, pages: int = 10
    ) -> RemoteSweep:
        """Ask Batch and ECS about every run they have held for more than ``stale_seconds`` (by its
        creation) and apply what they say, as if the events had come.

        Runs are read oldest first, ``limit`` at a time, up to ``pages`` pages: jobs that legitimately
        run (or wait in Batch's queue) for hours are looked up every pass, and must not hide the
        newer runs behind them.
        """
        now = now if now is not None else self.clock.now_ms()
        result = RemoteSweep()
        after: str | None = None
        for _ in range(pages):
            runs = self.runs.remote_runs(now - int(stale_seconds * 1000), limit, after)
            result.checked += len(runs)
            self._settle(runs, result)
            if len(runs) < limit:
                break
            after = runs[-1].id
        return result

    def _settle(self, runs: list[Run], result: RemoteSweep) -> None:
        """Look up one page of remote runs, by engine, and apply what each engine says."""
        engines: dict[str, list[Run]] = {}
        for run in runs:
            if run.external_id is not None:
                engines.setdefault(owner_engine(run.external_id), []).append(run)
        for name, held in engines.items():
            try:
                engine = self.placement.engine_named(name)
                known = engine.describe([run.external_id for run in held if run.external_id])
            except Exception:
                log.exception("cannot ask the engine about its runs", extra={"engine": name})
                result.failures += len(held)
                continue
            for run in held:
                assert run.external_id is not None  # noqa: S101 - grouped above
                change = known[run.external_id] if run.external_id in known else engine.lost(run.id, run.external_id)
                if change is None:
                    continue  # still queued: its events will come
                try:
                    applied = self.apply_state_change(change)
                except Exception:
                    log.exception("cannot settle a remote run", extra={"run_id": run.id})
                    result.failures += 1
                    continue
                if applied is not None and (applied.status, applied.external_id) != (run.status, run.external_id):
                    log.warning(
                        "settled a remote run whose events never came",
                        extra={"run_id": run.id, "engine": name, "status": applied.status.value,
                               "phase": change.phase},
                    )  # fmt: skip
                    result.settled.append(run.id)


def _another_task(run: Run, change: StateChange, max_lost_attempts: int) -> dict[str, Any] | None:
    """Whether an ended ECS task gets a successor, and how its attempt is counted (None: it does not).

    A task that failed to start (``TaskFailedToStart``: ``CannotPullContainerError``,
    ``ResourceInitializationError``) ran nothing: the platform's failure, retried on the lost-attempt
    allowance as on every engine (counted as an attempt, and as a lost one). Otherwise another task is due
    when the container asked for it, or it had claimed the run (so the attempt is counted) and died
    with attempts left. A task that exited before it claimed the run (a broken image) ends the run
    instead of looping.
    """
    if change.failed_to_start and run.lease_owner is None and run.lost_attempts < max_lost_attempts:
        return {"lost_attempts": run.lost_attempts + 1, "attempt": run.attempt + 1}
    if run.status == RunStatus.ENQUEUED:
        return {} if change.exit_code == RETRY_EXIT_CODE else None
    own_attempts = run.attempt - run.lost_attempts
    if run.lease_owner is not None and change.exit_code != 1 and own_attempts < run.max_attempts:
        return {}
    return None


def _succeeded(change: StateChange) -> bool:
    """Whether the engine says the container ended well (Batch SUCCEEDED, an ECS exit code 0)."""
    return change.phase == "succeeded" or (change.phase == "stopped" and change.exit_code == 0)


def _unrecorded_success(run: Run, change: StateChange) -> RunError:
    """The error of a job or task that ended well while its run is not over.

    The adapter records a run's end before it exits 0, so the run would be terminal; it is not when
    the adapter never ran (an image whose ENTRYPOINT ignores the command Batch gives it) or died
    quietly. Neither is the action's success: ``SUCCESSFUL`` with no ``ret`` would be a lie, and
    another attempt of the same image would do the same, so the run fails, not retried.
    """
    engine = change.engine
    if run.lease_owner is None:  # the adapter's claim names its job or task
        message = (
            f"the {engine} container exited 0 without running hatchway's adapter (the run was never claimed): "
            f"the image's ENTRYPOINT must run the command it is given ({' '.join(ADAPTER_MODULE)} --run RUN_ID), "
            "or the image has none"
        )
    else:
        message = f"the {engine} container claimed the run but exited 0 without recording its outcome"
    return RunError("platform", message, new_exception_id(), 500)


def _remote_error(change: StateChange) -> RunError:
    reason = _short(change.reason)
    exception_id = new_exception_id()
    if "timeout" in reason.lower():
        return RunError("timeout", "the run did not finish within its time limit", exception_id, 504)
    if change.exit_code is not None and change.exit_code not in (0, 1, RETRY_EXIT_CODE):
        return RunError(
            "application", f"the container exited with code {change.exit_code} ({reason})", exception_id, 500
        )
    return RunError("platform", f"the {change.engine} engine could not run the container ({reason})", exception_id, 500)


def _short(text: str | None) -> str:
    return (text or "no reason given").strip()[:300]
