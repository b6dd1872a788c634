"""Pipeline definitions: versioned, checked against the actions they run, secrets encrypted on receipt.

A new version is stored only when the definition changed (its digest, taken over the stored form
in which every secret value is a ciphertext bound to the project and environment). The pipeline
engine deploys each new version (Step Functions compiles it to a state machine; the local engine
has nothing to deploy).
"""

from __future__ import annotations

import logging
from typing import Any

from hatchway.domain.parameters import ANY_ACTION, is_ciphertext
from hatchway.domain.pipelines import inline
from hatchway.domain.pipelines.records import BUDDY_LAST_STATUS, ExecutionStatus, PipelineRecord, StepView
from hatchway.domain.pipelines.spec import (
    LOCAL_CONTAINER_FIELDS,
    PIPELINE_NAME_RE,
    PipelineSpec,
    Step,
    StepType,
    check_template,
    concise,
    hidden,
    parse_pipeline,
    put_secret,
    secret_slots,
    spec_of,
)
from hatchway.domain.records import Page
from hatchway.domain.runs import Mode
from hatchway.domain.spec import RUN_ACTION, ActionSpec, digest_of
from hatchway.domain.tenants import Principal
from hatchway.errors import BadRequest, Conflict, NotFound, SecretBindingError, ValidationFailed
from hatchway.ports import PipelineEngine, PipelineRepo, SecretBox
from hatchway.runtime.redact import HIDDEN
from hatchway.services.actions import ActionService
from hatchway.services.auth import Auth, Tenants
from hatchway.services.pipelines.steps import PREVIOUS_SCAN
from hatchway.services.placement import Placement

log = logging.getLogger("hatchway.pipelines")


def pipeline_record(
    repo: PipelineRepo,
    project_id: str,
    environment: str,
    name: str,
    version: int | None = None,
    include_deleted: bool = False,
) -> PipelineRecord:
    """A stored version of a pipeline (the latest by default), or NotFound."""
    record = repo.get_pipeline(project_id, environment, name, version, include_deleted)
    if record is None:
        raise NotFound(f"no pipeline {name}" + (f" version {version}" if version else ""))
    return record


class PipelineDefinitions:
    """Define, read, list and delete pipelines."""

    def __init__(
        self,
        repo: PipelineRepo,
        actions: ActionService,
        placement: Placement,
        box: SecretBox,
        engine: PipelineEngine,
        auth: Auth,
        tenants: Tenants,
    ) -> None:
        self.repo = repo
        self.actions = actions
        self.placement = placement
        self.box = box
        self.engine = engine
        self.auth = auth
        self.tenants = tenants

    def define(
        self, principal: Principal, project_id: str, environment: str, name: str, document: Any
    ) -> tuple[PipelineRecord, bool]:
        """Create or update a pipeline; (record, created) where ``created`` is False for a no-op."""
        self.auth.authorize(principal, project_id, environment, "actions:write")
        self.tenants.require_project(project_id)
        if not PIPELINE_NAME_RE.match(name):
            raise ValidationFailed.at(
                ["path", "name"], "a pipeline name is lowercase letters, digits and '-', at most 63 characters"
            )
        spec = parse_pipeline(document, name)
        self._check_steps(project_id, environment, spec)
        latest = self.repo.get_pipeline(project_id, environment, name)
        stored = self._seal(project_id, environment, spec, latest)
        digest = digest_of(stored)
        if latest is not None and latest.digest == digest:
            return latest, False
        engine_ref = self.engine.deploy(project_id, environment, PipelineSpec.model_validate(stored))
        return self.repo.register_pipeline(project_id, environment, name, stored, digest, engine_ref)

    def _check_container_step(self, spec: PipelineSpec, step: Step, at: list[str | int]) -> None:
        """A Run Docker container step needs a container executor (the local engine runs it on this
        gateway's); what only the Docker executor does is refused rather than ignored elsewhere."""
        if self.engine.name == "local":
            executor = self.placement.pick(inline.inline_spec(spec, step), Mode.ASYNC)
            if executor.name == "process":
                raise ValidationFailed.at(
                    [*at, "docker_image_name"],
                    "a Run Docker container step needs a container executor, and this gateway runs actions as "
                    "host processes; serve with HATCHWAY_EXECUTOR=docker (or auto with a Docker engine)",
                    "executor_unsupported",
                )
            if executor.name == "docker":
                return
            where = f"the {executor.name} executor, which runs this gateway's container steps"
        else:
            where = "a Step Functions step, which runs its image as a Batch or ECS task"
        for name in LOCAL_CONTAINER_FIELDS:
            if name in step.model_fields_set and getattr(step, name):
                raise ValidationFailed.at(
                    [*at, name],
                    f"{name} needs the pipeline filesystem and the Docker executor of a gateway that runs the "
                    f"pipeline itself, not {where}",
                    "executor_unsupported",
                )

    def _check_steps(self, project_id: str, environment: str, spec: PipelineSpec) -> None:
        """Refuse steps this gateway cannot run: unknown actions, versions, sync actions, parameters."""
        for index, step in enumerate(spec.steps):
            at: list[str | int] = ["body", "steps", index]
            if step.kind == StepType.RUN_DOCKER_CONTAINER:
                self._check_container_step(spec, step, at)
            if step.kind != StepType.ACTION or step.action is None:
                continue
            try:
                resolved = self.actions.resolve(project_id, environment, step.action, step.version, step.digest)
            except NotFound as exc:
                raise ValidationFailed.at([*at, "action"], exc.message, "unknown_action") from None
            except BadRequest as exc:
                raise ValidationFailed.at([*at, "action"], exc.message) from None
            action = resolved.spec
            invoked = step.sync_action or RUN_ACTION
            if step.sync_action is not None and step.sync_action not in action.sync_actions:
                raise ValidationFailed.at(
                    [*at, "sync_action"], f"action {step.action} has no sync action {step.sync_action}"
                )
            try:
                self.placement.pick(action, Mode.SYNC if step.is_sync else Mode.ASYNC).check(action, invoked)
            except ValidationFailed as exc:
                raise ValidationFailed.at([*at, "action"], exc.message, "executor_unsupported") from None
            if action.parameters_schema is not None:
                continue  # a JSON Schema judges the values, which references only fill in when the step starts
            declared = {p.name for p in action.parameters}
            for pname in step.parameters:
                if pname not in declared:
                    raise ValidationFailed.at([*at, "parameters", pname], f"action {step.action} has no parameter")
            for param in action.parameters:
                if param.required and param.default is None and param.name not in step.parameters:
                    raise ValidationFailed.at(
                        [*at, "parameters", param.name], f"action {step.action} requires parameter {param.name}"
                    )

    def _seal(
        self, project_id: str, environment: str, spec: PipelineSpec, latest: PipelineRecord | None
    ) -> dict[str, Any]:
        """The stored form: every secret value a ciphertext bound to this project and environment.

        A value given as ``[hidden]`` (read back from the API) keeps the current ciphertext; a
        plaintext equal to the current value keeps it too, so an unchanged definition keeps its digest.
        """
        stored = spec.normalised()
        for index, step in enumerate(spec.steps):
            stored["steps"][index]["type"] = step.kind.value
        previous = {slot.path: value for slot, value in secret_slots(latest.spec)} if latest else {}
        box = self.box
        for slot, value in list(secret_slots(stored)):
            if value == HIDDEN:
                if slot.path not in previous:
                    raise ValidationFailed.at(
                        ["body", *slot.path], "[hidden] keeps a secret's current value, and there is none", "missing"
                    )
                value = previous[slot.path]
            elif is_ciphertext(value):
                try:
                    template = box.decrypt(value, project_id, environment, slot.action or ANY_ACTION)
                except SecretBindingError:
                    raise SecretBindingError(
                        f"{'.'.join(slot.path)}: the ciphertext belongs to another project, environment or action"
                    ) from None
                if slot.path[0] == "steps":
                    # a secret parameter is a template too: its references are checked once decrypted
                    check_template(spec, slot.path[1], template, list(slot.path))
            else:
                kept = previous.get(slot.path)
                if kept is None or box.decrypt(kept, project_id, environment, slot.action or ANY_ACTION) != value:
                    kept = box.encrypt(value, project_id, environment, None)
                value = kept
            put_secret(stored, slot.path, value)
        return stored

    def get(
        self, principal: Principal, project_id: str, environment: str, name: str, version: int | None = None
    ) -> PipelineRecord:
        self.auth.authorize(principal, project_id, environment, "actions:read")
        return pipeline_record(self.repo, project_id, environment, name, version)

    def list(
        self, principal: Principal, project_id: str, environment: str, limit: int, cursor: str | None
    ) -> Page[PipelineRecord]:
        self.auth.authorize(principal, project_id, environment, "actions:read")
        return self.repo.list_pipelines(project_id, environment, limit, cursor)

    def delete(self, principal: Principal, project_id: str, environment: str, name: str) -> None:
        """Hide a pipeline (its versions and executions stay readable); retire what its engine deployed.

        Step Functions stops a deleted state machine's running executions at their next transition,
        so a pipeline deployed to an engine is not deleted (409) while it has unfinished executions.
        """
        self.auth.authorize(principal, project_id, environment, "actions:write")
        record = pipeline_record(self.repo, project_id, environment, name)
        if record.engine_ref:
            if self._unfinished(project_id, environment, name):
                raise Conflict(f"pipeline {name} has unfinished executions; terminate them or let them end first")
            self.engine.retire(record.engine_ref)
        if not self.repo.delete_pipeline(project_id, environment, name):
            raise NotFound(f"no pipeline {name}")
        self._release_steps(project_id, environment, name, record.version)

    def _release_steps(self, project_id: str, environment: str, name: str, latest: int) -> None:
        """Let the executors remove what the container steps of every version left (a setup image each).
        Tidying, as for a deleted action: the delete stands if it fails (logged)."""
        steps: dict[str, ActionSpec] = {}
        for version in range(1, latest + 1):
            record = self.repo.get_pipeline(project_id, environment, name, version, include_deleted=True)
            if record is None:
                continue
            spec = spec_of(record)
            for step in spec.steps:
                if step.kind == StepType.RUN_DOCKER_CONTAINER and step.setup_commands:
                    steps[inline.action_name(name, step.name)] = inline.inline_spec(spec, step)
        for action, step_spec in steps.items():
            try:
                self.placement.release_step(project_id, environment, action, step_spec)
            except Exception as exc:
                reason = getattr(exc, "message", type(exc).__name__)
                log.warning(
                    "what a deleted pipeline's step had on its engine was not removed",
                    extra={"pipeline": name, "project_id": project_id, "reason": reason},
                )

    def _unfinished(self, project_id: str, environment: str, name: str) -> bool:
        for status in ExecutionStatus:
            if status.is_terminal:
                continue
            for execution in self.repo.list_executions(
                project_id, environment, name, PREVIOUS_SCAN, None, status
            ).items:
                if not self.engine.refresh(execution).is_terminal:
                    return True
        return False

    def step_view(self, principal: Principal, project_id: str, environment: str, name: str, step: str) -> StepView:
        """One step's definition (secret values hidden) with ``last_execution_status`` (Buddy's step view)."""
        record = self.get(principal, project_id, environment, name)
        index = next((i for i, s in enumerate(record.spec["steps"]) if s["name"] == step), None)
        if index is None:
            raise NotFound(f"pipeline {name} has no step {step}")
        last = "INITIAL"
        for execution in self.repo.list_executions(project_id, environment, name, PREVIOUS_SCAN, None).items:
            state = next((s for s in execution.steps if s.name == step), None)
            if state is not None:
                status = self.engine.refresh(execution).step(step).status.value
                last = BUDDY_LAST_STATUS.get(status, status)
                break
        return StepView(name, record.version, concise(hidden(record.spec)["steps"][index]), last)
