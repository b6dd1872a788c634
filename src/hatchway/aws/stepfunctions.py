"""Pipelines on AWS Step Functions: deploy, start, approve, terminate, and read back step states.

:class:`StepFunctionsEngine` keeps one state machine per pipeline (named from its project,
environment and name), compiled by :mod:`hatchway.aws.asl` and updated on every new version;
each execution is a state machine execution named by the execution's id. Before starting it, the
engine chooses a run id for every step and passes them in the input, so the history, the Batch
jobs and ECS tasks (named, or started, by their run ids) and the run records agree. Async steps
run on the run executors' own job or task definitions (:mod:`hatchway.aws.batch`,
:mod:`hatchway.aws.ecs`), prepared when the pipeline is defined; their container runs the
runtime adapter for the step's run, which reads it from the store, decrypts its secrets and
records its outcome, exactly as for a run started through the API.

:func:`apply_history` turns an execution history into step statuses; :meth:`StepFunctionsEngine.refresh`
writes them into the execution record (on every read, and when EventBridge reports a status change
to :class:`~hatchway.services.pipelines.function.PipelineFunction`, the Lambda the state machine
calls for its steps). What the engine needs of the gateway comes in :class:`Bindings`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hatchway.aws.asl import SUFFIXES, Targets, state_machine_definition
from hatchway.config import Settings
from hatchway.domain.actions import Resolved
from hatchway.domain.pipelines import inline
from hatchway.domain.pipelines.records import Execution, ExecutionStatus, PipelineRecord, StepState, StepStatus
from hatchway.domain.pipelines.spec import PipelineSpec, Step, StepType, TriggerTime, spec_of
from hatchway.domain.runs import new_run_id, now_ms
from hatchway.domain.spec import ActionSpec
from hatchway.errors import Conflict, NotFound, Unavailable, ValidationFailed
from hatchway.ports import PipelineRepo

log = logging.getLogger("hatchway.pipelines")


@dataclass
class Event:
    """One event of an execution history, reduced to what step states need."""

    id: int
    previous: int
    type: str
    at: int
    state: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Bindings:
    """What the engine needs of the gateway (built by the composition root)."""

    #: the pipelines' records (definitions to compile, executions to bring up to date)
    repo: PipelineRepo
    #: an action by (project, environment, name, version, digest): ``ActionService.resolve``
    resolve: Callable[[str, str, str, int | None, str | None], Resolved]
    #: the run engine of an action's runs, None when the gateway executes them: ``Placement.engine_for``
    engine_for: Callable[[ActionSpec], Any]
    #: the deployment's resource name prefix (state machines, job definitions)
    resource_prefix: str


def machine_name(project_id: str, environment: str, pipeline: str, prefix: str = "hatchway") -> str:
    """A state machine name (at most 80 characters) unique per project, environment and pipeline."""
    tag = hashlib.sha256(f"{project_id}/{environment}/{pipeline}".encode()).hexdigest()[:12]
    return f"{prefix}-{tag}-{pipeline}"[:80]


def terminate_arn(execution_arn: str, execution_id: str) -> str:
    """The ARN of the execution that runs an execution's ON_TERMINATE section."""
    return execution_arn.rsplit(":", 1)[0] + f":{execution_id}-terminate"


class StepFunctionsEngine:
    """Runs pipelines as Step Functions state machines (a :class:`~hatchway.ports.PipelineEngine`)."""

    name = "stepfunctions"

    def __init__(
        self,
        bindings: Bindings,
        sfn: Any,
        role_arn: str,
        targets: Targets,
        batch: Any = None,
        ecs: Any = None,
    ) -> None:
        self.bindings = bindings
        self.repo = bindings.repo
        self.sfn = sfn
        self.role_arn = role_arn
        self.targets = targets
        self.batch = batch
        self.ecs = ecs

    @classmethod
    def from_settings(cls, settings: Settings, bindings: Bindings) -> StepFunctionsEngine:
        """An engine on the deployment's resources (the run settings are those of the AWS executors)."""
        import boto3

        missing = [
            name
            for name, value in (
                ("HATCHWAY_STATES_ROLE_ARN", settings.pipelines.states_role_arn),
                ("HATCHWAY_PIPELINE_FUNCTION_ARN", settings.pipelines.pipeline_function_arn),
            )
            if not value
        ]
        if missing:
            raise Unavailable(f"pipelines on Step Functions need {', '.join(missing)}")
        kwargs = {"region_name": settings.aws.aws_region, "endpoint_url": settings.aws.aws_endpoint_url}
        targets = Targets(
            function_arn=settings.pipelines.pipeline_function_arn or "",
            runs_on="ecs" if settings.executors.run_executor == "ecs" else "batch",
            job_queue=settings.aws.batch_job_queue,
            cluster=settings.aws.ecs_cluster,
            subnets=list(settings.aws.subnets),
            security_groups=list(settings.aws.security_groups),
        )
        return cls(
            bindings,
            boto3.client("stepfunctions", **kwargs),
            settings.pipelines.states_role_arn or "",
            targets,
            batch=boto3.client("batch", **kwargs),
            ecs=boto3.client("ecs", **kwargs),
        )

    # ---- definitions ---------------------------------------------------------------------------

    def compile(self, project_id: str, environment: str, spec: PipelineSpec) -> dict[str, Any]:
        """The state machine of ``spec``, with each async step's job definition registered."""
        effective = self._effective(project_id, environment, spec)
        definitions = {
            step.name: self._definition(project_id, environment, spec, step)
            for step in effective.steps
            if step.kind != StepType.WAIT_FOR_APPROVE and not step.is_sync
        }
        targets = dataclasses.replace(self.targets, definitions=definitions)
        return state_machine_definition(effective, targets)

    def deploy(self, project_id: str, environment: str, spec: PipelineSpec) -> str:
        """Create or update the pipeline's state machine; its ARN."""
        from botocore.exceptions import BotoCoreError, ClientError

        definition = json.dumps(self.compile(project_id, environment, spec))
        name = machine_name(project_id, environment, spec.name or "", self.bindings.resource_prefix)
        try:
            arn = self._find(name)
            if arn is None:
                created = self.sfn.create_state_machine(
                    name=name, definition=definition, roleArn=self.role_arn, type="STANDARD",
                    tags=[{"key": "hatchway:project", "value": project_id},
                          {"key": "hatchway:environment", "value": environment}],
                )  # fmt: skip
                return str(created["stateMachineArn"])
            self.sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=self.role_arn)
            return arn
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("InvalidDefinition", "ValidationException"):
                raise ValidationFailed.at(["body"], "Step Functions refused the compiled pipeline") from exc
            raise Unavailable("Step Functions is unavailable; the pipeline was not changed") from exc
        except BotoCoreError as exc:
            raise Unavailable("Step Functions is unavailable; the pipeline was not changed") from exc

    def retire(self, arn: str) -> None:
        """Delete a deleted pipeline's state machine (one already gone is fine)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            with _suppress("StateMachineDoesNotExist"):
                self.sfn.delete_state_machine(stateMachineArn=arn)
        except (ClientError, BotoCoreError) as exc:
            raise Unavailable("Step Functions is unavailable; the pipeline was not deleted") from exc

    def _find(self, name: str) -> str | None:
        paginator = self.sfn.get_paginator("list_state_machines")
        for page in paginator.paginate():
            for machine in page.get("stateMachines", []):
                if machine["name"] == name:
                    return str(machine["stateMachineArn"])
        return None

    def _effective(self, project_id: str, environment: str, spec: PipelineSpec) -> PipelineSpec:
        """``spec`` with each action step's retries taken from its action when the step leaves them open."""
        steps = []
        for step in spec.steps:
            if (
                step.kind == StepType.ACTION
                and step.action
                and (step.retry_count is None or step.retry_interval is None)
            ):
                action = self.bindings.resolve(project_id, environment, step.action, step.version, step.digest)
                policy = action.spec.retry
                step = step.model_copy(
                    update={
                        "retry_count": step.retry_count
                        if step.retry_count is not None
                        else (policy.count if policy else 0),
                        "retry_interval": step.retry_interval
                        if step.retry_interval is not None
                        else int(policy.interval_seconds if policy else 0),
                    }
                )
            steps.append(step)
        return spec.model_copy(update={"steps": steps})

    def _definition(self, project_id: str, environment: str, spec: PipelineSpec, step: Step) -> str:
        """The job or task definition an async step runs on; the run executor prepares its own."""
        if step.kind == StepType.RUN_DOCKER_CONTAINER:
            action = inline.inline_spec(spec, step)
        else:
            action = self.bindings.resolve(project_id, environment, step.action or "", step.version,
                                           step.digest).spec  # fmt: skip
        if not action.image_uri:
            raise ValidationFailed.at(
                ["body", "steps", [s.name for s in spec.steps].index(step.name), "action"],
                "on AWS an async step runs an image: its action needs image_uri",
                "executor_unsupported",
            )
        engine = self.bindings.engine_for(action)
        if engine is not None:
            engine.prepare(project_id, action, environment)
            return str(engine.definition_name(project_id, action, environment))
        # the gateway's runs go elsewhere (a local executor): register a plain definition of the image
        digest = action.digest().removeprefix("sha256:")[:16]
        name = re.sub(r"[^A-Za-z0-9_-]", "-", f"{self.bindings.resource_prefix}-step-{step.name}-{digest}")[:128]
        if self.targets.runs_on == "ecs":
            return self._task_definition(name, action)
        if self.batch is None:
            return name
        found = self.batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
        if not found:
            self.batch.register_job_definition(
                jobDefinitionName=name,
                type="container",
                platformCapabilities=["FARGATE"],
                parameters={"run_id": "none"},
                containerProperties={
                    "image": action.image_uri,
                    **({"command": action.argv} if action.argv else {}),
                    "resourceRequirements": [
                        {"type": "VCPU", "value": f"{action.compute_requirements.vCPU / 1024:g}"},
                        {"type": "MEMORY", "value": str(action.compute_requirements.memory)},
                    ],
                },
                tags={"hatchway:project": project_id, "hatchway:environment": environment},
            )
        return name

    def _task_definition(self, name: str, action: ActionSpec) -> str:
        if self.ecs is None:
            return name
        container: dict[str, Any] = {"name": self.targets.container_name, "image": action.image_uri, "essential": True,
                                     "memory": action.compute_requirements.memory}  # fmt: skip
        if action.argv:
            container["command"] = action.argv
        registered = self.ecs.register_task_definition(
            family=name,
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu=str(action.compute_requirements.vCPU),
            memory=str(action.compute_requirements.memory),
            containerDefinitions=[container],
        )
        return str(registered["taskDefinition"]["taskDefinitionArn"])

    # ---- executions ----------------------------------------------------------------------------

    def start(self, execution: Execution, record: PipelineRecord, previous_status: Callable[[], str | None]) -> str:
        """Start the state machine for ``execution`` (its step states get their run ids); its ARN."""
        from botocore.exceptions import BotoCoreError, ClientError

        spec = spec_of(record)
        runs = {}
        for index, step in enumerate(spec.steps):
            if not step.is_gate:
                runs[f"s{index}"] = new_run_id()
        execution.previous_status = previous_status()
        document = self._input(execution, runs, "main")
        try:
            started = self.sfn.start_execution(
                stateMachineArn=record.engine_ref, name=execution.id, input=json.dumps(document)
            )
        except (ClientError, BotoCoreError) as exc:
            raise Unavailable("Step Functions is unavailable; the execution was not started") from exc
        return str(started["executionArn"])

    def _input(self, execution: Execution, runs: dict[str, str], phase: str) -> dict[str, Any]:
        from hatchway.domain.parameters import is_ciphertext

        return {
            "execution_id": execution.id,
            "project_id": execution.project_id,
            "environment": execution.environment,
            "pipeline": execution.pipeline,
            "version": execution.version,
            # encrypted variables stay out of the history; steps get them from the store
            "variables": {k: v for k, v in execution.variables.items() if not is_ciphertext(v)},
            "previous_status": execution.previous_status or "",
            "phase": phase,
            "warned": False,
            "runs": runs,
        }

    def terminate(self, execution: Execution) -> Execution:
        """Stop the execution, then run its ON_TERMINATE section in an execution of its own; the
        execution as its state machines now say. Terminating again stops that section too."""
        if execution.engine_ref:
            self._stop(execution)
        return self.refresh(execution)

    def _stop(self, execution: Execution) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        assert execution.engine_ref is not None  # noqa: S101 - the caller checked
        spec = spec_of(self._record(execution))
        try:
            with _suppress("ExecutionDoesNotExist"):
                self.sfn.stop_execution(
                    executionArn=execution.engine_ref, error="HatchwayTerminated", cause="terminated through the API"
                )
            if not spec.section(TriggerTime.ON_TERMINATE):
                return
            document = json.loads(self.sfn.describe_execution(executionArn=execution.engine_ref)["input"])
            document["phase"] = "terminate"
            machine = execution.engine_ref.split(":execution:")[0] + ":stateMachine:"
            machine += execution.engine_ref.split(":execution:")[1].split(":")[0]
            try:
                self.sfn.start_execution(
                    stateMachineArn=machine, name=f"{execution.id}-terminate", input=json.dumps(document)
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                    raise
                with _suppress("ExecutionDoesNotExist"):
                    self.sfn.stop_execution(
                        executionArn=terminate_arn(execution.engine_ref, execution.id), error="HatchwayTerminated"
                    )
        except (ClientError, BotoCoreError) as exc:
            raise Unavailable("Step Functions is unavailable; try terminating again") from exc

    def approve(self, execution: Execution, gate: str) -> None:
        """Send the gate's task token back, so the state machine goes on."""
        token = None
        for run_arn in self._arns(execution):
            for event in self._raw_history(run_arn):
                details = event.get("taskScheduledEventDetails") or event.get("lambdaFunctionScheduledEventDetails")
                if not details:
                    continue
                parameters = json.loads(details.get("parameters") or details.get("input") or "{}")
                payload = parameters.get("Payload", parameters)
                if isinstance(payload, dict) and payload.get("op") == "await_approval" and payload.get("step") == gate:
                    token = payload.get("token")
        if token is None:
            raise Conflict("the state machine has not reached its approval gate yet; try again")
        self.sfn.send_task_success(taskToken=token, output=json.dumps({"approved": True}))

    def wake(self, execution_id: str | None = None) -> None:
        return None  # Step Functions moves executions on by itself

    def step_runs(self, execution: Execution) -> dict[str, str]:
        """The run ids the execution's input chose for its steps (``s<index>`` -> run id)."""
        described = self.sfn.describe_execution(executionArn=execution.engine_ref)
        runs = json.loads(described.get("input") or "{}").get("runs", {})
        return {str(k): str(v) for k, v in runs.items()}

    def _record(self, execution: Execution) -> PipelineRecord:
        record = self.repo.get_pipeline(
            execution.project_id, execution.environment, execution.pipeline, execution.version, include_deleted=True
        )
        if record is None:
            raise NotFound(f"no pipeline {execution.pipeline} version {execution.version}")
        return record

    def _arns(self, execution: Execution) -> list[str]:
        if not execution.engine_ref:
            return []
        return [execution.engine_ref, terminate_arn(execution.engine_ref, execution.id)]

    def _raw_history(self, arn: str) -> Iterator[dict[str, Any]]:
        from botocore.exceptions import ClientError

        try:
            paginator = self.sfn.get_paginator("get_execution_history")
            for page in paginator.paginate(executionArn=arn):
                yield from page.get("events", [])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("ExecutionDoesNotExist", "ResourceNotFound"):
                raise

    def refresh(self, execution: Execution) -> Execution:
        """The execution with its step states read from Step Functions, written back if they changed."""
        from botocore.exceptions import BotoCoreError, ClientError

        if not execution.engine_ref or execution.is_terminal:
            return execution
        try:
            spec = spec_of(self._record(execution))
            main = self.sfn.describe_execution(executionArn=execution.engine_ref)
            runs = json.loads(main.get("input") or "{}").get("runs", {})
            events = list(_events(self._raw_history(execution.engine_ref)))
            phases = [(main, events)]
            if execution.terminate_requested and spec.section(TriggerTime.ON_TERMINATE):
                with _suppress("ExecutionDoesNotExist"):
                    arn = terminate_arn(execution.engine_ref, execution.id)
                    phases.append(
                        (self.sfn.describe_execution(executionArn=arn), list(_events(self._raw_history(arn))))
                    )
        except (ClientError, BotoCoreError) as exc:
            log.warning("cannot read a Step Functions execution", extra={"execution_id": execution.id,
                                                                         "reason": type(exc).__name__})  # fmt: skip
            return execution

        def change(current: Execution) -> Execution | None:
            return apply_history(spec, current, runs, phases)

        return self.repo.update_execution(execution.id, change)


if TYPE_CHECKING:  # mypy checks that the adapter answers the port
    from hatchway import ports

    def _implements(engine: StepFunctionsEngine) -> ports.PipelineEngine:
        return engine


class _suppress:  # noqa: N801 - used like contextlib.suppress
    """Ignore a Step Functions error with one of these codes (an execution that is gone, ...)."""

    def __init__(self, *codes: str) -> None:
        self.codes = codes

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        response = getattr(exc, "response", None)
        code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
        return code in self.codes


# ---------------------------------------------------------------------------------------------
# execution history -> step states


def _ms(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value) if value else now_ms()


def _events(raw: Iterator[dict[str, Any]]) -> Iterator[Event]:
    """The history's events with the state each belongs to (found through ``previousEventId``)."""
    states: dict[int, str | None] = {}
    for item in raw:
        entered = item.get("stateEnteredEventDetails")
        exited = item.get("stateExitedEventDetails")
        if entered:
            state = entered["name"]
        elif exited:
            state = exited["name"]
        else:
            state = states.get(item.get("previousEventId", 0))
        states[item["id"]] = state
        detail = next((v for k, v in item.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})
        yield Event(item["id"], item.get("previousEventId", 0), item["type"], _ms(item.get("timestamp")), state, detail)


def apply_history(
    spec: PipelineSpec,
    execution: Execution,
    runs: dict[str, str],
    phases: list[tuple[dict[str, Any], list[Event]]],
) -> Execution | None:
    """``execution`` with step states and status as the histories of its phases say; None if unchanged."""
    # the history is the whole truth: replay it onto fresh step states, keeping only what it lacks
    updated = Execution.from_dict(execution.to_dict())
    updated.steps = [StepState(s.name, run_id=s.run_id, approved_by=s.approved_by) for s in execution.steps]
    index = {step.name: i for i, step in enumerate(spec.steps)}
    for _, events in phases:
        for event in events:
            _apply(spec, updated, index, runs, event)
    for state in updated.steps:
        if state.approved_by and state.status == StepStatus.WAITING_FOR_APPROVE:
            state.finish(StepStatus.SUCCESSFUL, now_ms(), "approved")  # the token is on its way back
    main, _ = phases[0]
    final_phase, _ = phases[-1]
    status = main["status"]
    # a terminate this gateway asked for is as good as the ABORTED status that follows it
    aborted = status == "ABORTED" or (execution.terminate_requested and status == "RUNNING")
    if status == "RUNNING" and not aborted:
        waiting = any(s.status == StepStatus.WAITING_FOR_APPROVE for s in updated.steps)
        if updated.terminate_requested:
            updated.status = ExecutionStatus.TERMINATING
        else:
            updated.status = ExecutionStatus.WAITING_FOR_APPROVE if waiting else ExecutionStatus.INPROGRESS
        return None if updated == execution else updated
    for state in updated.steps:
        step = spec.step(state.name)
        stopped = state.status in (StepStatus.INPROGRESS, StepStatus.WAITING_FOR_APPROVE)
        if aborted and stopped and step is not None and step.trigger_time != TriggerTime.ON_TERMINATE:
            state.finish(StepStatus.TERMINATED, _ms(main.get("stopDate")), "the execution was terminated")
    if aborted and len(phases) > 1 and final_phase["status"] == "RUNNING":
        updated.status = ExecutionStatus.TERMINATING
        updated.outcome = "TERMINATED"
        return None if updated == execution else updated
    for state in updated.steps:
        if not state.status.is_final:
            state.finish(StepStatus.NOT_EXECUTED, _ms(final_phase.get("stopDate")), "its trigger did not fire")
    if aborted:
        updated.status, updated.outcome = ExecutionStatus.TERMINATED, "TERMINATED"
    elif status == "SUCCEEDED":
        outcome = json.loads(main.get("output") or "{}").get("outcome", "SUCCESSFUL")
        updated.status = ExecutionStatus(outcome if outcome in ("SUCCESSFUL", "WARNING") else "SUCCESSFUL")
        updated.outcome = updated.status.value
    else:
        updated.status, updated.outcome = ExecutionStatus.FAILED, "FAILED"
    updated.finished_at = _ms(final_phase.get("stopDate"))
    return None if updated == execution else updated


def _apply(spec: PipelineSpec, execution: Execution, index: dict[str, int], runs: dict[str, str], event: Event) -> None:
    if event.state is None:
        return
    name, suffix = _split(event.state)
    step = spec.step(name)
    if step is None:
        return
    state = execution.step(name)
    if event.type.endswith("StateEntered"):
        if suffix in ("", ".start") and not state.status.is_final:
            state.status = StepStatus.WAITING_FOR_APPROVE if step.is_gate else StepStatus.INPROGRESS
            state.started_at = state.started_at or event.at
            state.run_id = state.run_id or runs.get(f"s{index[name]}")
            if step.is_gate:
                state.status_reason = step.comment or "waiting for approval"
        elif suffix == ".skipped":
            state.finish(StepStatus.SKIPPED, event.at, "the step is disabled or its conditions are not met")
        elif suffix == ".not-executed":
            state.finish(StepStatus.NOT_EXECUTED, event.at, "its trigger did not fire")
        elif suffix == ".warned":
            state.status = StepStatus.WARNING
            state.finished_at = event.at
        elif suffix == ".failed":
            state.status = StepStatus.FAILED
            state.finished_at = event.at
    elif event.type == "TaskScheduled" and suffix == "":
        state.attempt += 1
        if state.status in (StepStatus.FAILED, StepStatus.INPROGRESS):
            state.status = StepStatus.WAITING_FOR_APPROVE if step.is_gate else StepStatus.INPROGRESS
            state.finished_at = None
    elif event.type in ("TaskFailed", "TaskTimedOut", "TaskStartFailed", "TaskSubmitFailed"):
        reason = event.detail.get("error") or event.type
        cause = event.detail.get("cause")
        state.status = StepStatus.FAILED
        state.finished_at = event.at
        state.status_reason = _reason(reason, cause)
    elif (
        event.type == "TaskStateExited"
        and suffix == ""
        and state.status
        in (
            StepStatus.INPROGRESS,
            StepStatus.WAITING_FOR_APPROVE,
        )
    ):
        state.finish(StepStatus.SUCCESSFUL, event.at)
        if step.is_gate:
            state.status_reason = "approved"


def _split(state_name: str) -> tuple[str, str]:
    for suffix in SUFFIXES:
        if state_name.endswith(suffix):
            return state_name[: -len(suffix)], suffix
    return state_name, ""


def _reason(error: str, cause: str | None) -> str:
    """A short reason from a task's error; a Lambda's error message when it has one."""
    if cause:
        try:
            parsed = json.loads(cause)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("errorMessage"), str):
            return f"{error}: {parsed['errorMessage']}"[:500]
    return error[:500]
