"""Pipeline executions: start (once per Idempotency-Key), read, list, approve, terminate.

An execution is one record, changed compare-and-set like a run. Its steps are ordinary runs
(:mod:`hatchway.services.pipelines.steps`), driven by the pipeline engine: the worker pool's
(:mod:`hatchway.services.pipelines.local`) or Step Functions' (:mod:`hatchway.aws.stepfunctions`),
which starts a state machine for the execution and brings its step states up to date on each read.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hatchway.config import IdempotencySettings
from hatchway.domain.parameters import ANY_ACTION, is_ciphertext
from hatchway.domain.pipelines.records import Execution, ExecutionStatus, StepState, StepStatus, new_execution_id
from hatchway.domain.pipelines.spec import spec_of
from hatchway.domain.records import Page
from hatchway.domain.runs import now_ms
from hatchway.domain.spec import coerce_str
from hatchway.domain.tenants import Principal
from hatchway.errors import Conflict, NotFound, ValidationFailed
from hatchway.ports import PipelineEngine, PipelineRepo, SecretBox
from hatchway.runtime.redact import HIDDEN
from hatchway.services.auth import Auth
from hatchway.services.idempotency import Idempotency, same
from hatchway.services.pipelines.definitions import pipeline_record
from hatchway.services.pipelines.steps import previous_status


class PipelineExecutions:
    """Executions of pipelines, over the pipeline engine."""

    def __init__(
        self,
        repo: PipelineRepo,
        engine: PipelineEngine,
        box: SecretBox,
        idempotency: Idempotency,
        auth: Auth,
        settings: IdempotencySettings,
    ) -> None:
        self.repo = repo
        self.engine = engine
        self.box = box
        self.idempotency = idempotency
        self.auth = auth
        self.settings = settings

    def execute(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        name: str,
        overrides: dict[str, Any],
        idempotency_key: str | None = None,
        deadline: float | None = None,
    ) -> Execution:
        """Start an execution of the latest version, with settable variables overridden.

        With an ``idempotency_key`` a repeat of the request (the same overrides) gets the execution
        the first one started instead of another, for as long as run keys are kept (a repeat waits
        for the first until ``deadline`` at most); the same key with other overrides is a conflict.
        """
        self.auth.authorize(principal, project_id, environment, "runs:write")
        if idempotency_key is None:
            return self._execute(principal, project_id, environment, name, overrides)
        fingerprint = hashlib.sha256(
            json.dumps({"route": f"pipelines/{name}/executions", "overrides": overrides}, sort_keys=True).encode()
        ).hexdigest()

        def work(reserved: str) -> dict[str, Any]:
            # the id reserved for the key survives a crash: an execution created before it is found
            execution_id = "pex_" + reserved.removeprefix("run_")
            if self.repo.get_execution(execution_id, project_id, environment) is None:
                self._execute(principal, project_id, environment, name, overrides, execution_id)
            return {"id": execution_id}

        scope = f"{project_id}/{environment}/pipelines/{name}/{idempotency_key}"
        ttl = self.settings.idempotency_seconds
        first = self.idempotency.once(
            scope, fingerprint, ttl, work, encode=same, decode=same, keep_errors=False, code=202, deadline=deadline
        )  # fmt: skip
        return self._execution(project_id, environment, name, str(first["id"]))

    def _execute(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        name: str,
        overrides: dict[str, Any],
        execution_id: str | None = None,
    ) -> Execution:
        record = pipeline_record(self.repo, project_id, environment, name)
        spec = spec_of(record)
        variables = {v.key: v.value for v in spec.variables}
        for key, value in overrides.items():
            variable = spec.variable(key)
            if variable is None:
                raise ValidationFailed.at(["body", "variables", key], f"pipeline {name} has no variable {key}")
            if not variable.settable:
                raise ValidationFailed.at(["body", "variables", key], f"variable {key} is not settable", "not_settable")
            if value is None or isinstance(value, dict | list):
                raise ValidationFailed.at(["body", "variables", key], "a variable value is a string, number or boolean")
            text = coerce_str(value)
            if variable.encrypted and text != HIDDEN:
                if is_ciphertext(text):
                    self.box.decrypt(text, project_id, environment, ANY_ACTION)
                else:
                    text = self.box.encrypt(text, project_id, environment, None)
            if text != HIDDEN:
                variables[key] = text
        now = now_ms()
        execution = Execution(
            id=execution_id or new_execution_id(now),
            project_id=project_id,
            environment=environment,
            pipeline=name,
            version=record.version,
            variables=variables,
            steps=[StepState(step.name) for step in spec.steps],
            created_at=now,
            triggered_by=principal.token_id or "admin",
            engine=self.engine.name,
        )
        # an engine that starts the execution elsewhere answers its reference: it is running from now
        engine_ref = self.engine.start(execution, record, lambda: previous_status(self.repo, execution))
        if engine_ref is not None:
            execution.engine_ref = engine_ref
            execution.status = ExecutionStatus.INPROGRESS
            execution.started_at = now
        self.repo.create_execution(execution)
        self.engine.wake(execution.id)
        return execution

    def _execution(self, project_id: str, environment: str, name: str, execution_id: str) -> Execution:
        execution = self.repo.get_execution(execution_id, project_id, environment)
        if execution is None or execution.pipeline != name:
            raise NotFound(f"no execution {execution_id} of pipeline {name}")
        return execution

    def get_execution(
        self, principal: Principal, project_id: str, environment: str, name: str, execution_id: str
    ) -> Execution:
        self.auth.authorize(principal, project_id, environment, "runs:read")
        return self.engine.refresh(self._execution(project_id, environment, name, execution_id))

    def list_executions(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        name: str,
        limit: int,
        cursor: str | None,
        status: str | None = None,
    ) -> Page[Execution]:
        self.auth.authorize(principal, project_id, environment, "runs:read")
        if status and status not in ExecutionStatus.__members__:
            raise ValidationFailed.at(["query", "status"], f"status is one of {', '.join(ExecutionStatus)}")
        pipeline_record(self.repo, project_id, environment, name, include_deleted=True)
        page = self.repo.list_executions(project_id, environment, name, limit, cursor, status)
        return Page([self.engine.refresh(e) for e in page.items], page.next)

    def approve(
        self, principal: Principal, project_id: str, environment: str, name: str, execution_id: str
    ) -> Execution:
        """Let an execution waiting at its approval gate go on."""
        self.auth.authorize(principal, project_id, environment, "runs:write")
        execution = self.engine.refresh(self._execution(project_id, environment, name, execution_id))
        record = pipeline_record(self.repo, project_id, environment, name, execution.version, include_deleted=True)
        gate = spec_of(record).gate

        def change(current: Execution) -> Execution:
            state = current.step(gate.name) if gate else None
            if current.is_terminal or current.terminate_requested or current.status == ExecutionStatus.TERMINATING:
                raise Conflict(f"execution {execution_id} is {current.status.value}; there is nothing to approve")
            if state is None or state.status != StepStatus.WAITING_FOR_APPROVE:
                raise Conflict(f"execution {execution_id} is not waiting for approval")
            state.finish(StepStatus.SUCCESSFUL, now_ms(), "approved")
            state.approved_by = principal.token_id or "admin"
            current.status = ExecutionStatus.INPROGRESS
            return current

        approved = self.repo.update_execution(execution_id, change)
        if gate is not None:
            self.engine.approve(approved, gate.name)
        self.engine.wake(execution_id)
        return approved

    def terminate(
        self, principal: Principal, project_id: str, environment: str, name: str, execution_id: str
    ) -> Execution:
        """Stop an execution: running steps are cancelled, then its ON_TERMINATE steps run."""
        self.auth.authorize(principal, project_id, environment, "runs:write")
        self.engine.refresh(self._execution(project_id, environment, name, execution_id))

        def change(current: Execution) -> Execution | None:
            if current.is_terminal:
                raise Conflict(f"execution {execution_id} already finished ({current.status.value})")
            if current.terminate_requested:
                return None
            current.terminate_requested = True
            current.status = ExecutionStatus.TERMINATING
            return current

        return self.engine.terminate(self.repo.update_execution(execution_id, change))
