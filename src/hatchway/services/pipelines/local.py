"""The worker pool's pipeline engine: executions advanced by a thread of the pool.

:class:`LocalPipelineEngine` carries out what :func:`hatchway.domain.pipelines.plan.plan` decides:
it creates the run of a step that has started and cancels the run of a step that must stop. Its
:class:`Advancer` sleeps until something happens to an execution - it was created, approved or
terminated, or one of its steps' runs ended (the worker that ran it says so) - and then advances
that execution. Every ``scan_seconds`` it also advances every execution that has not ended, which
covers what happened in another process (``hatchway worker`` on the same home), sync steps waiting
for their retry interval, runs settled by the lease sweeper, and executions a crashed gateway left
behind. Advancing is idempotent, so two processes advancing the same execution is merely
redundant; an execution survives a crash of the gateway exactly as its runs do.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from hatchway.config import RunSettings
from hatchway.domain.pipelines import filesystem
from hatchway.domain.pipelines.plan import plan
from hatchway.domain.pipelines.records import Execution, PipelineRecord, StepState, StepStatus
from hatchway.domain.pipelines.spec import PipelineSpec, Step, spec_of
from hatchway.domain.runs import Run, new_run_id, now_ms
from hatchway.domain.tenants import SYSTEM
from hatchway.errors import ActionFailed, Conflict, HatchwayError, NotFound, Overloaded
from hatchway.ports import PipelineRepo, RunRepo
from hatchway.services.pipelines.definitions import pipeline_record
from hatchway.services.pipelines.steps import StepRuns, previous_status
from hatchway.services.runs import RunService

log = logging.getLogger("hatchway.pipelines")

SCAN_SECONDS = 1.0
#: at most this many active executions are read to sweep the filesystems of ended ones
SWEEP_LIMIT = 10_000
#: an execution stays cached as "known active" for the wake-ups of this many scans
_SCAN_LIMIT = 500


class LocalPipelineEngine:
    """A :class:`~hatchway.ports.PipelineEngine` whose steps run on this gateway's run use cases."""

    name = "local"

    def __init__(
        self,
        repo: PipelineRepo,
        runs: RunRepo,
        steps: StepRuns,
        run_service: RunService,
        settings: RunSettings,
        work_dir: Path | None = None,
    ) -> None:
        self.repo = repo
        #: where the executions' pipeline filesystems are (removed when an execution ends)
        self.work_dir = work_dir
        self.runs = runs
        self.steps = steps
        self.run_service = run_service
        self.settings = settings
        self._launched: set[str] = set()
        self._lock = threading.Lock()
        self._sync_pool: ThreadPoolExecutor | None = None
        self._advancer: Advancer | None = None

    # ---- the engine port: nothing runs elsewhere, so there is nothing to deploy or read back ---

    def deploy(self, project_id: str, environment: str, spec: PipelineSpec) -> str | None:
        return None

    def retire(self, engine_ref: str) -> None:
        return None

    def start(
        self, execution: Execution, record: PipelineRecord, previous_status: Callable[[], str | None]
    ) -> str | None:
        return None  # the advancer starts it (woken once it is stored)

    def approve(self, execution: Execution, gate: str) -> None:
        return None  # the approval is in the record; the advancer goes on from there

    def terminate(self, execution: Execution) -> Execution:
        self.wake(execution.id)
        return execution

    def refresh(self, execution: Execution) -> Execution:
        return execution

    def step_runs(self, execution: Execution) -> dict[str, str]:
        return {f"s{index}": state.run_id for index, state in enumerate(execution.steps) if state.run_id}

    # ---- advancing -----------------------------------------------------------------------------

    def advance(self, execution_id: str) -> Execution | None:
        """Bring one local execution a step further and carry out what its new state asks for."""
        seen: dict[str, Run | None] = {}
        specs: list[PipelineSpec] = []

        def change(current: Execution) -> Execution | None:
            if current.is_terminal or current.engine != "local":
                return None
            record = pipeline_record(self.repo, current.project_id, current.environment, current.pipeline,
                                     current.version, include_deleted=True)  # fmt: skip
            spec = spec_of(record)
            specs[:] = [spec]
            seen.clear()
            seen.update({s.run_id: self.runs.get_run(s.run_id, current.project_id) for s in current.steps if s.run_id})
            lost_allowance = self.settings.max_lost_attempts
            return plan(
                spec, current, seen, now_ms(), lambda: previous_status(self.repo, current), new_run_id, lost_allowance
            )

        try:
            execution = self.repo.update_execution(execution_id, change)
        except NotFound:
            return None
        if specs and not execution.is_terminal:
            self._effects(execution, specs[0], seen)
        elif specs and self.work_dir is not None:  # it has just ended: its steps need no filesystem
            with contextlib.suppress(filesystem.PathRefused):
                shutil.rmtree(filesystem.execution_dir(self.work_dir, execution.project_id, execution.id),
                              ignore_errors=True)  # fmt: skip
        return execution

    def _effects(self, execution: Execution, spec: PipelineSpec, seen: dict[str, Run | None]) -> None:
        """Create the runs of started steps and cancel the runs of stopped ones, as the state says."""
        now = now_ms()
        for state in execution.steps:
            if state.run_id is None:
                continue
            run = seen.get(state.run_id)
            step = spec.step(state.name)
            if step is None:  # pragma: no cover - a state always has its step
                continue
            if run is None:
                if not (state.status.is_final or state.cancel_requested) and (state.available_at or 0) <= now:
                    self._start(execution, spec, step, state)
            elif not run.is_terminal and (state.cancel_requested or state.status.is_final):
                self._cancel(run)

    def _start(self, execution: Execution, spec: PipelineSpec, step: Step, state: StepState) -> None:
        run_id = state.run_id
        assert run_id is not None  # noqa: S101 - the caller checked
        if step.is_sync:
            with self._lock:
                if run_id in self._launched:
                    return
                self._launched.add(run_id)
                if self._sync_pool is None:
                    self._sync_pool = ThreadPoolExecutor(4, thread_name_prefix="hatchway-pipeline-sync")
                pool = self._sync_pool
            pool.submit(self._call_sync, execution, spec, step, run_id)
            return
        try:
            self.steps.create_step_run(execution, spec, step, run_id)
        except Conflict:
            return  # another advancer created it
        except HatchwayError as exc:
            self._step_failed(execution.id, step, run_id, exc.message)

    def _call_sync(self, execution: Execution, spec: PipelineSpec, step: Step, run_id: str) -> None:
        retry_later = False
        try:
            self.steps.call_step_sync(execution, spec, step, run_id)
        except (Conflict, ActionFailed):
            pass  # the run exists and records its outcome
        except Overloaded:
            retry_later = True
        except HatchwayError as exc:
            if self.runs.get_run(run_id, execution.project_id) is None:
                self._step_failed(execution.id, step, run_id, exc.message)
        except Exception:
            log.exception("a sync step failed inside the gateway", extra={"execution_id": execution.id})
        finally:
            with self._lock:
                self._launched.discard(run_id)
            if not retry_later:
                self.wake(execution.id)

    def _step_failed(self, execution_id: str, step: Step, run_id: str, message: str) -> None:
        """A step whose run could not be created ends here (its run never existed)."""

        def change(current: Execution) -> Execution | None:
            state = current.step(step.name)
            if state.run_id != run_id or state.status.is_final:
                return None
            status = StepStatus.WARNING if step.ignore_errors else StepStatus.FAILED
            state.started_at = state.started_at or now_ms()
            state.finish(status, now_ms(), f"the step could not start: {message}")
            return current

        try:
            self.repo.update_execution(execution_id, change)
        finally:
            self.wake(execution_id)

    def _cancel(self, run: Run) -> None:
        with contextlib.suppress(Conflict, NotFound):
            self.run_service.cancel(SYSTEM, run.project_id, run.environment, run.id)

    # ---- the advancer --------------------------------------------------------------------------

    def sweep_filesystems(self) -> int:
        """Remove the pipeline filesystems of executions that are no longer active (a gateway
        stopped before their end could remove them); how many were removed."""
        if self.work_dir is None or not filesystem.filesystem_root(self.work_dir).is_dir():
            return 0
        since = time.time()
        active = self.repo.active_executions("local", SWEEP_LIMIT)
        if len(active) >= SWEEP_LIMIT:
            return 0  # not the whole picture: leave them to the next start
        keep = {e.id for e in active}
        removed = 0
        for folder in filesystem.filesystem_root(self.work_dir).glob("*/*"):
            with contextlib.suppress(OSError):
                # a folder made after the listing began belongs to an execution it may not show yet
                if folder.name not in keep and folder.lstat().st_mtime < since:
                    shutil.rmtree(folder)
                    removed += 1
        return removed

    def start_advancer(self) -> None:
        """Advance local executions in the background (the worker pool calls this)."""
        with contextlib.suppress(Exception):
            if self.sweep_filesystems():
                log.info("removed the pipeline filesystems of ended executions")
        with self._lock:
            if self._advancer is None:
                self._advancer = Advancer(self)
                self._advancer.start()

    def stop_advancer(self) -> None:
        with self._lock:
            advancer, self._advancer = self._advancer, None
            pool, self._sync_pool = self._sync_pool, None
        if advancer is not None:
            advancer.stop()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def wake(self, execution_id: str | None = None) -> None:
        if self._advancer is not None:
            self._advancer.wake(execution_id)

    def notice(self, run: Run) -> None:
        """A run ended or changed: if it is a pipeline step's, its execution may go on."""
        link = run.options.get("pipeline") if isinstance(run.options, dict) else None
        if isinstance(link, dict) and isinstance(link.get("execution_id"), str):
            self.wake(link["execution_id"])


if TYPE_CHECKING:  # mypy checks that the engine answers the port
    from hatchway import ports

    def _implements(engine: LocalPipelineEngine) -> ports.PipelineEngine:
        return engine


class Advancer:
    """Advances local executions when woken, and all active ones on a timer."""

    def __init__(self, engine: LocalPipelineEngine, scan_seconds: float = SCAN_SECONDS) -> None:
        self.engine = engine
        self.scan_seconds = scan_seconds
        self._wake = threading.Condition()
        self._pending: set[str] = set()
        self._scan_now = True
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="hatchway-pipelines", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self, execution_id: str | None = None) -> None:
        """Advance ``execution_id`` soon (None: every active execution)."""
        with self._wake:
            if execution_id is None:
                self._scan_now = True
            else:
                self._pending.add(execution_id)
            self._wake.notify()

    def _loop(self) -> None:
        last_scan = 0.0
        while not self._stopping.is_set():
            with self._wake:
                if not self._pending and not self._scan_now:
                    self._wake.wait(max(0.0, self.scan_seconds - (time.monotonic() - last_scan)))
                due, self._pending = self._pending, set()
                scan, self._scan_now = self._scan_now, False
            if self._stopping.is_set():
                return
            if scan or time.monotonic() - last_scan >= self.scan_seconds:
                last_scan = time.monotonic()
                try:
                    due |= {e.id for e in self.engine.repo.active_executions("local", _SCAN_LIMIT)}
                except Exception:
                    log.exception("listing active executions failed")
            for execution_id in sorted(due):
                if self._stopping.is_set():
                    return
                try:
                    self.engine.advance(execution_id)
                except Exception:
                    log.exception("advancing an execution failed; retrying on the next scan",
                                  extra={"execution_id": execution_id})  # fmt: skip
