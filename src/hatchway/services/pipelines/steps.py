"""A pipeline's steps as runs, whichever engine drives them.

:class:`StepRuns` makes the run of a step: its action (a registered one, or the action an inline
"Run Docker container" step describes), its parameters with references resolved (secret ones
decrypted in memory only), created through the run use cases like any other run.
:class:`InlineActions` resolves ``pipeline:<pipeline>/<step>`` to the action an inline step
describes, so its runs are ordinary runs of a derived action.
"""

from __future__ import annotations

from typing import Any

from hatchway.domain.actions import ActionRecord, Resolved
from hatchway.domain.parameters import ANY_ACTION, is_ciphertext
from hatchway.domain.pipelines import inline
from hatchway.domain.pipelines.records import Execution, StepStatus
from hatchway.domain.pipelines.spec import VARIABLES_PARAMETER, PipelineSpec, Reference, Step, StepType, render, spec_of
from hatchway.domain.runs import Run, RunRequest, SyncOutcome
from hatchway.domain.spec import coerce_str, is_secret_name
from hatchway.domain.tenants import SYSTEM
from hatchway.errors import NotFound, StepProblem
from hatchway.ports import PipelineRepo, RunRepo, SecretBox
from hatchway.services.runs import RunService

#: how many of a pipeline's latest executions are read to find the one that ended before another
PREVIOUS_SCAN = 50


def previous_status(repo: PipelineRepo, execution: Execution) -> str | None:
    """The status of the pipeline's last execution that ended before this one began (what a
    step's ``previous_status`` condition and the ``ON_BACK_TO_SUCCESS`` section look at)."""
    earlier = repo.list_executions(
        execution.project_id, execution.environment, execution.pipeline, PREVIOUS_SCAN, None
    ).items
    for other in earlier:
        if other.id < execution.id and other.is_terminal:
            return other.status.value
    return None


class StepRuns:
    """The runs of an execution's steps, over the run use cases."""

    def __init__(self, runs: RunRepo, run_service: RunService, box: SecretBox) -> None:
        self.runs = runs
        self.run_service = run_service
        self.box = box

    def create_step_run(
        self, execution: Execution, spec: PipelineSpec, step: Step, run_id: str, submit: bool = True
    ) -> Run:
        """The run of an async step, ENQUEUED under ``run_id`` (raises Conflict if it exists).

        ``submit`` False: the run is only recorded (a state machine starts its job or task).
        """
        name, version, digest = self._target(execution, step)
        request = RunRequest(
            parameters=self._parameters(execution, spec, step, name),
            version=version,
            digest=digest,
            timeout_seconds=step.timeout,
            retries=step.retry_count,
            retry_interval_seconds=float(step.retry_interval) if step.retry_interval is not None else None,
            options={"pipeline": {"execution_id": execution.id, "pipeline": execution.pipeline, "step": step.name}},
        )
        return self.run_service.enqueue(
            execution.project_id, execution.environment, name, request, run_id=run_id, submit=submit
        )

    def call_step_sync(self, execution: Execution, spec: PipelineSpec, step: Step, run_id: str) -> SyncOutcome:
        """Call a sync step's action as run ``run_id``; its answer, or the contract's error."""
        name, version, digest = self._target(execution, step)
        request = RunRequest(
            parameters=self._parameters(execution, spec, step, name),
            version=version,
            digest=digest,
            timeout_seconds=step.timeout,
        )
        return self.run_service.call_sync(
            SYSTEM, execution.project_id, execution.environment, name, step.sync_action or "", request, run_id
        )

    def _target(self, execution: Execution, step: Step) -> tuple[str, int | None, str | None]:
        """The action a step runs: (name, version, digest)."""
        if step.kind == StepType.RUN_DOCKER_CONTAINER:
            return inline.action_name(execution.pipeline, step.name), execution.version, None
        return step.action or "", step.version, step.digest

    def _parameters(self, execution: Execution, spec: PipelineSpec, step: Step, action: str) -> dict[str, Any]:
        """The step's parameters with their references resolved (secret ones decrypted, in memory only)."""
        box = self.box
        project, environment = execution.project_id, execution.environment

        def plain(value: str, binding: str = ANY_ACTION) -> str:
            return box.decrypt(value, project, environment, binding) if is_ciphertext(value) else value

        def resolve(template: str, secret: bool, local: dict[str, str]) -> str:
            def value_of(ref: Reference) -> str:
                if ref.variable is not None:
                    if ref.variable in local:
                        raw = local[ref.variable]
                    elif ref.variable in execution.variables:
                        raw = execution.variables[ref.variable]
                    else:
                        raise StepProblem(f"{ref.text}: no variable {ref.variable}")
                    if is_ciphertext(raw) and not secret:
                        raise StepProblem(f"{ref.text} is encrypted and may appear only in a secret value")
                    return plain(raw)
                return self._step_value(execution, ref)

            return render(plain(template, action), value_of)

        if step.kind != StepType.RUN_DOCKER_CONTAINER:
            return {
                name: resolve(value, is_secret_name(name), {}) if isinstance(value, str) else value
                for name, value in step.parameters.items()
            }
        values: dict[str, str] = {}
        secret_keys: set[str] = set()
        own = {v.key: v.value for v in step.variables}
        for variable in inline.step_variables(spec, step):
            if variable.key in own:  # the step's own variables are templates
                values[variable.key] = resolve(own[variable.key], variable.encrypted, {})
            else:  # the pipeline's are values, as the execution set them
                values[variable.key] = plain(execution.variables.get(variable.key, variable.value))
            if variable.encrypted:
                secret_keys.add(variable.key)
        parameters: dict[str, Any] = {VARIABLES_PARAMETER: inline.variables_blob(values)}
        for key, value in values.items():
            parameters[f"#{key}" if key in secret_keys else key] = value
        return parameters

    def _step_value(self, execution: Execution, ref: Reference) -> str:
        state = execution.step(ref.step or "")
        run = self.runs.get_run(state.run_id, execution.project_id) if state.run_id else None
        if run is None or state.status not in (StepStatus.SUCCESSFUL, StepStatus.WARNING):
            raise StepProblem(f"{ref.text} has no value: step {ref.step} is {state.status.value}")
        value: Any = run.exports if ref.kind == "exports" else run.ret
        for part in ref.path:
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                raise StepProblem(f"{ref.text} has no value: step {ref.step} did not give it")
        if value is None:
            raise StepProblem(f"{ref.text} has no value: step {ref.step} did not give it")
        return coerce_str(value)


class InlineActions:
    """The :class:`~hatchway.ports.ActionSource` of the ``pipeline`` prefix."""

    def __init__(self, repo: PipelineRepo) -> None:
        self.repo = repo

    def resolve(
        self, project_id: str, environment: str, name: str, version: int | None, digest: str | None
    ) -> Resolved:
        parsed = inline.parse_action_name(name)
        if parsed is None:
            raise NotFound(f"no action {name}")
        pipeline, step_name = parsed
        record = self.repo.get_pipeline(project_id, environment, pipeline, version, include_deleted=True)
        spec = spec_of(record) if record else None
        step = spec.step(step_name) if spec else None
        if record is None or spec is None or step is None or step.kind != StepType.RUN_DOCKER_CONTAINER:
            raise NotFound(f"no action {name}")
        action = inline.inline_spec(spec, step)
        action_digest = action.digest()
        if digest is not None and digest != action_digest:
            raise NotFound(f"no action {name} with digest {digest}")
        normal = action.normalised()
        return Resolved(
            ActionRecord(project_id, environment, name, record.version, action_digest, record.created_at, normal),
            action,
        )
