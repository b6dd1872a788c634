"""The local engine's rules: one pure step from an execution's state to its next state.

:func:`plan` reads an execution, its definition and the runs of its steps, and answers the
execution as it should be now: run outcomes absorbed into step states, steps started (a run id
assigned), skipped, stopped or marked not executed, the next section chosen, the execution
finished. It performs no I/O, so it can be replayed after a crash as often as needed; the
service writes its answer with compare-and-set and then *derives* what to do from the written
state alone (create the run of a started step whose run does not exist yet, cancel the run of a
step that must stop). A server killed between the write and the effects redoes the effects on
the next pass, and a finished step is never started again: its state says it finished.

Where Buddy is silent: a step of a soft parallel group that fails lets its siblings run to their
end, then the pipeline fails; in a hard group the failure stops the siblings (TERMINATED). The
``ON_WAIT_FOR_APPROVE`` steps are notifications: they start when the gate begins to wait, and
their failures do not change the pipeline's outcome. A failing step of the section run after the
main one (``ON_SUCCESS``, ...) turns a successful execution into a failed one.

A sync step whose call was cut off because its gateway stopped (the sweeper fails such a run with
:data:`~hatchway.domain.runs.SYNC_GATEWAY_LOST`) is called again with a new run, whatever its
``retry_count``: the loss is not the action's fault. Such calls have their own budget, the
lost-worker allowance of runs (``HATCHWAY_MAX_LOST_ATTEMPTS``), and do not use the step's retries.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Literal

from hatchway.domain.pipelines.records import Execution, ExecutionStatus, StepState, StepStatus
from hatchway.domain.pipelines.spec import SECTIONS, Group, PipelineSpec, Step, TriggerTime
from hatchway.domain.runs import SYNC_GATEWAY_LOST, Run, RunStatus

RETRYABLE = frozenset({"application", "timeout", "platform"})

GroupState = Literal["running", "ok", "failed"]


def retry_delay_ms(interval_seconds: float) -> int:
    """A step's wait before each retry: its ``retry_interval``, fixed (Buddy's "delay time between
    auto retries"), where a run's own retries back off exponentially."""
    return int(max(0.0, interval_seconds) * 1000)


def plan(
    spec: PipelineSpec,
    execution: Execution,
    runs: Mapping[str, Run | None],
    now: int,
    previous_status: Callable[[], str | None],
    new_run_id: Callable[[], str],
    max_lost_attempts: int = 3,
) -> Execution:
    """The execution as it should be now (a new object; the argument is not changed)."""
    planner = _Planner(spec, copy.deepcopy(execution), runs, now, previous_status, new_run_id, max_lost_attempts)
    return planner.advance()


class _Planner:
    def __init__(
        self,
        spec: PipelineSpec,
        execution: Execution,
        runs: Mapping[str, Run | None],
        now: int,
        previous_status: Callable[[], str | None],
        new_run_id: Callable[[], str],
        max_lost_attempts: int = 3,
    ) -> None:
        self.spec = spec
        self.ex = execution
        self.runs = runs
        self.now = now
        self._previous = previous_status
        self.new_run_id = new_run_id
        self.max_lost_attempts = max_lost_attempts

    def advance(self) -> Execution:
        ex = self.ex
        if ex.is_terminal:
            return ex
        if ex.status == ExecutionStatus.ENQUEUED:
            ex.status = ExecutionStatus.INPROGRESS
            ex.started_at = self.now
        self._absorb()
        if ex.terminate_requested and not self._terminate():
            return ex
        if ex.outcome is None:
            ex.status = ExecutionStatus.INPROGRESS
            result = self._groups(self.spec.groups(self.spec.main))
            self._hooks()
            if result == "running":
                return ex
            warned = any(self._state(s).status == StepStatus.WARNING for s in self.spec.main)
            self._enter_section("FAILED" if result == "failed" else ("WARNING" if warned else "SUCCESSFUL"))
        outcome = ex.outcome or "FAILED"
        ex.status = ExecutionStatus.TERMINATING if outcome == "TERMINATED" else ExecutionStatus.INPROGRESS
        result = self._groups(self.spec.groups(self.spec.section(*SECTIONS[outcome])))
        self._hooks()
        if result == "running" or any(s.is_started and not s.status.is_final for s in ex.steps):
            return ex
        final = outcome
        if result == "failed" and outcome in ("SUCCESSFUL", "WARNING"):
            final = "FAILED"
            ex.status_reason = "a step run after the pipeline's steps failed"
        self._not_executed(ex.steps, "its trigger did not fire")
        ex.status = ExecutionStatus(final)
        ex.finished_at = self.now
        return ex

    # ---- run outcomes ------------------------------------------------------------------------

    def _state(self, step: Step) -> StepState:
        return self.ex.step(step.name)

    def _absorb(self) -> None:
        """Copy the outcome of each step's run into the step's state."""
        for state in self.ex.steps:
            if state.run_id is None or state.status.is_final or state.status == StepStatus.WAITING_FOR_APPROVE:
                continue
            run = self.runs.get(state.run_id)
            if run is None:
                continue
            if run.started_at is not None:
                state.started_at = state.started_at or run.started_at
            if not run.is_terminal:
                if run.attempt > 0 or run.status != RunStatus.ENQUEUED:
                    state.status = StepStatus.INPROGRESS
                    state.attempt = max(state.attempt, run.attempt)
                continue
            step = self.spec.step(state.name)
            if step is None:  # pragma: no cover - a state always has its step
                continue
            if not step.is_sync:
                state.attempt = max(state.attempt, run.attempt)
            state.started_at = state.started_at or run.started_at or self.now
            if run.status == RunStatus.SUCCESSFUL:
                state.finish(StepStatus.SUCCESSFUL, run.finished_at or self.now, "")
                state.status_reason = None
            elif run.status == RunStatus.TERMINATED and state.cancel_requested:
                state.finish(StepStatus.TERMINATED, run.finished_at or self.now, "stopped by the pipeline")
            else:
                self._failed(step, state, run)

    def _failed(self, step: Step, state: StepState, run: Run) -> None:
        reason = run.error.message if run.error else (run.status_reason or "the step's run failed")
        if run.status == RunStatus.TERMINATED:
            reason = "its run was cancelled"
        kind = run.error.kind if run.error else None
        lost = run.error is not None and kind == "platform" and run.error.message == SYNC_GATEWAY_LOST
        if step.is_sync and lost and state.lost_attempts < self.max_lost_attempts and not state.cancel_requested:
            state.attempt += 1
            state.lost_attempts += 1
            state.run_id = self.new_run_id()
            state.available_at = None
            state.status = StepStatus.INPROGRESS
            state.status_reason = f"attempt {state.attempt - 1} was cut off by a stopped gateway; calling again"
            return
        attempts = 1 + (step.retry_count or 0)
        tried = state.attempt - state.lost_attempts
        if step.is_sync and kind in RETRYABLE and tried < attempts and not state.cancel_requested:
            delay = retry_delay_ms(step.retry_interval or 0)
            state.attempt += 1
            state.run_id = self.new_run_id()
            state.available_at = self.now + delay
            state.status = StepStatus.INPROGRESS
            state.status_reason = f"attempt {state.attempt - 1} failed; retrying in {delay / 1000:g} s"
            return
        status = StepStatus.WARNING if step.ignore_errors else StepStatus.FAILED
        state.finish(status, run.finished_at or self.now, _last_line(reason))

    # ---- sections and groups -------------------------------------------------------------------

    def _groups(self, groups: list[Group]) -> GroupState:
        for group in groups:
            result = self._group(group)
            if result != "ok":
                return result
        return "ok"

    def _group(self, group: Group) -> GroupState:
        if group.steps[0].is_gate:
            return self._gate(group.steps[0])
        for step in group.steps:
            state = self._state(step)
            if not state.is_started:
                self._start_or_skip(step, state)
        states = [self._state(step) for step in group.steps]
        if any(not s.status.is_final for s in states):
            if group.is_hard and any(s.status == StepStatus.FAILED for s in states):
                for state in states:
                    if not state.status.is_final:
                        self._stop(state, "a step of its hard parallel group failed")
            return "running"
        return "failed" if any(s.status == StepStatus.FAILED for s in states) else "ok"

    def _skip_reason(self, step: Step) -> tuple[StepStatus, str] | None:
        if step.disabled:
            return StepStatus.SKIPPED, "the step is disabled"
        variables = self.ex.variables
        if not all(c.holds(variables.get(c.trigger_variable_key)) for c in step.trigger_conditions):
            return StepStatus.SKIPPED, "its trigger conditions are not met"
        first_only = step.trigger_time == TriggerTime.ON_FAILURE and step.run_only_on_first_failure
        if first_only and self.ex.previous_status == "FAILED":
            return StepStatus.NOT_EXECUTED, "it runs only on the first failure, and the previous execution failed"
        if step.trigger_time == TriggerTime.ON_BACK_TO_SUCCESS and self.ex.previous_status != "FAILED":
            return StepStatus.NOT_EXECUTED, "the previous execution did not fail"
        return None

    def _start_or_skip(self, step: Step, state: StepState) -> None:
        skip = self._skip_reason(step)
        if skip is not None:
            state.finish(skip[0], self.now, skip[1])
            return
        state.run_id = self.new_run_id()
        state.attempt = 1

    def _gate(self, step: Step) -> GroupState:
        state = self._state(step)
        if not state.is_started:
            skip = self._skip_reason(step)
            if skip is not None:
                state.finish(skip[0], self.now, skip[1])
                return "ok"
            state.status = StepStatus.WAITING_FOR_APPROVE
            state.started_at = self.now
            state.status_reason = step.comment or "waiting for approval"
        if state.status == StepStatus.WAITING_FOR_APPROVE:
            self.ex.status = ExecutionStatus.WAITING_FOR_APPROVE
            return "running"
        return "ok" if state.status in (StepStatus.SUCCESSFUL, StepStatus.SKIPPED) else "failed"

    def _hooks(self) -> None:
        """The ON_WAIT_FOR_APPROVE steps, once the gate has begun to wait."""
        gate = self.spec.gate
        if gate is None or self.ex.terminate_requested:
            return
        state = self._state(gate)
        if state.status in (StepStatus.WAITING_FOR_APPROVE, StepStatus.SUCCESSFUL):
            self._groups(self.spec.groups(self.spec.section(TriggerTime.ON_WAIT_FOR_APPROVE)))

    def _enter_section(self, outcome: str) -> None:
        reason = "an earlier step failed" if outcome == "FAILED" else "the execution was terminated"
        self._not_executed([self._state(s) for s in self.spec.main], reason)
        self.ex.outcome = outcome
        self.ex.previous_status = self._previous()

    def _not_executed(self, states: list[StepState], reason: str) -> None:
        for state in states:
            if not state.is_started:
                state.finish(StepStatus.NOT_EXECUTED, self.now, reason)

    # ---- terminate -----------------------------------------------------------------------------

    def _stop(self, state: StepState, reason: str) -> None:
        if state.status == StepStatus.WAITING_FOR_APPROVE:
            state.finish(StepStatus.TERMINATED, self.now, reason)
        elif state.run_id is None:
            state.finish(StepStatus.NOT_EXECUTED, self.now, reason)
        else:
            state.cancel_requested = True
            if self.runs.get(state.run_id) is None:
                state.finish(StepStatus.TERMINATED, self.now, f"{reason}, before it started")

    def _terminate(self) -> bool:
        """Stop what runs; True once nothing does (then the ON_TERMINATE section may run)."""
        ex = self.ex
        ex.status = ExecutionStatus.TERMINATING
        spared = set() if ex.outcome == "TERMINATED" else {s.name for s in self.spec.section(TriggerTime.ON_TERMINATE)}
        pending = [s for s in ex.steps if s.name not in spared and not s.status.is_final]
        for state in pending:
            self._stop(state, "the execution was terminated")
        if any(not s.status.is_final for s in pending):
            return False
        if ex.outcome == "TERMINATED":
            self._not_executed(ex.steps, "the execution was terminated")
            ex.status = ExecutionStatus.TERMINATED
            ex.finished_at = self.now
            return False
        ex.terminate_requested = False
        self._enter_section("TERMINATED")
        return True


def _last_line(text: str) -> str:
    """The most specific line of an error message (a user error's message ends with its cause)."""
    stripped = text.strip()
    return (stripped.splitlines()[-1] if stripped else text)[:500]
