"""What hatchway's pipeline Lambda does for the state machines of the Step Functions engine.

A state machine calls it for its steps: ``start_step`` records a step's run (its references
resolved, its secrets encrypted) before the state machine starts its Batch job or ECS task,
``sync_step`` calls a sync action through the gateway, ``await_approval`` notes the wait (a
NotFound for an execution or gate it does not know).
EventBridge sends it their status changes (``aws.states``), which bring the execution's record up
to date through the engine.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hatchway.domain.pipelines.records import Execution
from hatchway.domain.pipelines.spec import PipelineSpec, Step, references, spec_of
from hatchway.domain.runs import new_run_id
from hatchway.errors import Conflict, NotFound, StepInputsPending
from hatchway.ports import PipelineEngine, PipelineRepo, RunRepo
from hatchway.services.pipelines.steps import StepRuns


class PipelineFunction:
    """What hatchway's pipeline Lambda does for a state machine and for EventBridge."""

    def __init__(self, repo: PipelineRepo, runs: RunRepo, steps: StepRuns, engine: PipelineEngine) -> None:
        self.repo = repo
        self.runs = runs
        self.steps = steps
        self.engine = engine

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("source") == "aws.states":
            return self.on_status_change(event.get("detail") or {})
        op = event.get("op")
        if op == "start_step":
            return self.start_step(event["execution_id"], event["step"], event["run_id"])
        if op == "sync_step":
            return self.sync_step(event["execution_id"], event["step"], event["run_id"], int(event.get("attempt") or 0))
        if op == "await_approval":
            # the gate waits for its task token; a gate of no known execution is a NotFound (the
            # state machine's error name), never a wait that nobody could ever approve
            self._context(str(event.get("execution_id") or ""), str(event.get("step") or ""))
            return {"waiting": True}
        raise ValueError(f"unknown pipeline operation {op!r}")

    def _context(self, execution_id: str, step_name: str) -> tuple[Execution, PipelineSpec, Step]:
        execution = self.repo.get_execution(execution_id)
        if execution is None:
            raise NotFound(f"no execution {execution_id}")
        record = self.repo.get_pipeline(
            execution.project_id, execution.environment, execution.pipeline, execution.version, include_deleted=True
        )
        spec = spec_of(record) if record else None
        step = spec.step(step_name) if spec else None
        if spec is None or step is None:
            raise NotFound(f"no step {step_name} in execution {execution_id}")
        return execution, spec, step

    def _ready(self, execution: Execution, spec: PipelineSpec, step: Step) -> Execution:
        """The execution up to date, once the steps ``step`` refers to have recorded their outputs."""
        runs = self.engine.step_runs(execution)
        templates = [v for v in step.parameters.values() if isinstance(v, str)] + [v.value for v in step.variables]
        for name in {ref.step for template in templates for ref in references(template) if ref.step}:
            index = next(i for i, s in enumerate(spec.steps) if s.name == name)
            run_id = runs.get(f"s{index}")
            run = self.runs.get_run(run_id, execution.project_id) if run_id else None
            if run is not None and not run.is_terminal:
                raise StepInputsPending(f"step {name} has not recorded its outputs yet")
        return self.engine.refresh(execution)

    def start_step(self, execution_id: str, step_name: str, run_id: str) -> dict[str, Any]:
        """Record the run of an async step (references resolved, secrets encrypted) before its job starts.

        The run is recorded, not submitted: the state machine starts its Batch job or ECS task,
        whose adapter claims it. A second delivery of the same task changes nothing.
        """
        execution, spec, step = self._context(execution_id, step_name)
        execution = self._ready(execution, spec, step)
        with contextlib.suppress(Conflict):
            self.steps.create_step_run(execution, spec, step, run_id, submit=False)
        return {"run_id": run_id}

    def sync_step(self, execution_id: str, step_name: str, run_id: str, attempt: int) -> dict[str, Any]:
        """Call a sync step's action; an error (its type the state machine's error name) if it failed."""
        execution, spec, step = self._context(execution_id, step_name)
        execution = self._ready(execution, spec, step)
        if attempt > 0:
            run_id = new_run_id()  # each attempt of a sync call is a run of its own

            def record(current: Execution) -> Execution:
                current.step(step_name).run_id = run_id
                return current

            self.repo.update_execution(execution_id, record)
        result = self.steps.call_step_sync(execution, spec, step, run_id)
        return {"run_id": run_id, "ret": result.ret, "exports": result.exports}

    def on_status_change(self, detail: dict[str, Any]) -> dict[str, Any]:
        """EventBridge told us an execution's status changed: bring its record up to date."""
        name = str(detail.get("name") or "").removesuffix("-terminate")
        execution = self.repo.get_execution(name) if name.startswith("pex_") else None
        if execution is None:
            return {"updated": False}
        refreshed = self.engine.refresh(execution)
        return {"updated": True, "status": refreshed.status.value}
