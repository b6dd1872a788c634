"""Pipelines as use cases: define, execute, approve, terminate - and the local engine's effects.

:class:`PipelineService` uses the run use cases for what runs already do (authorisation, resolving
actions, parameter checks and encryption, creating runs, sync calls, cancel): every step of an
execution is an ordinary run with its own record, attempts, retries, timeout and logs. The service
adds definitions (versioned, secrets encrypted on receipt), executions (one record per execution,
compare-and-set like runs) and, on the local engine, the effects of
:func:`hatchway.domain.pipelines.plan.plan`: create the run of a step that has started, cancel the
run of a step that must stop. A :class:`~hatchway.services.pipelines.local.Advancer` in the
worker pool calls :meth:`PipelineService.advance` when a step's run ends and on a timer, so an
execution survives a crash of the gateway exactly as its runs do.

On the ``stepfunctions`` engine (AWS) a definition is compiled to a state machine when it is
defined, an execution starts it, and reading an execution brings its step states up to date from
the state machine's history. That engine (``aws/stepfunctions.py``) is made by the factory the
composition root gives, on first use.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hatchway.config import Settings
from hatchway.domain.parameters import ANY_ACTION, is_ciphertext
from hatchway.domain.pipelines import inline
from hatchway.domain.pipelines.plan import plan
from hatchway.domain.pipelines.records import (
    Execution,
    ExecutionStatus,
    PipelineRecord,
    StepState,
    StepStatus,
    new_execution_id,
)
from hatchway.domain.pipelines.spec import (
    PIPELINE_NAME_RE,
    VARIABLES_PARAMETER,
    PipelineSpec,
    Reference,
    Step,
    StepType,
    check_template,
    concise,
    parse_pipeline,
    render,
    spec_of,
)
from hatchway.domain.records import Page
from hatchway.domain.runs import Mode, Run, RunRequest, SyncOutcome, iso, new_run_id, now_ms
from hatchway.domain.spec import RUN_ACTION, coerce_str, digest_of, is_secret_name
from hatchway.domain.tenants import SYSTEM, Principal
from hatchway.errors import (
    ActionFailed,
    BadRequest,
    Conflict,
    HatchwayError,
    NotFound,
    Overloaded,
    SecretBindingError,
    StepProblem,
    ValidationFailed,
)
from hatchway.ports import PipelineRepo, RunRepo, SecretBox
from hatchway.runtime.redact import HIDDEN
from hatchway.services.actions import ActionService
from hatchway.services.auth import Auth, Tenants
from hatchway.services.idempotency import Idempotency, same
from hatchway.services.placement import Placement
from hatchway.services.runs import RunService

if TYPE_CHECKING:
    from hatchway.aws.stepfunctions import StepFunctionsEngine
    from hatchway.services.pipelines.local import Advancer

log = logging.getLogger("hatchway.pipelines")

PREVIOUS_SCAN = 50


@dataclass(frozen=True)
class Slot:
    """Where a secret value sits in a definition: a variable or a secret parameter."""

    path: tuple[str, ...]
    action: str | None


class PipelineService:
    """Pipeline definitions and executions over the run use cases."""

    def __init__(
        self,
        repo: PipelineRepo,
        runs_repo: RunRepo,
        auth: Auth,
        tenants: Tenants,
        actions: ActionService,
        placement: Placement,
        box: SecretBox,
        idempotency: Idempotency,
        runs: RunService,
        settings: Settings,
        engine_name: str,
        make_engine: Callable[[PipelineService], StepFunctionsEngine],
    ) -> None:
        self.store = repo
        self.runs_repo = runs_repo
        self.auth = auth
        self.tenants = tenants
        self.actions = actions
        self.placement = placement
        self.box = box
        self.idempotency = idempotency
        self.runs = runs
        self.settings = settings
        self.engine_name = engine_name
        self._make_engine = make_engine
        self._launched: set[str] = set()
        self._lock = threading.Lock()
        self._sync_pool: ThreadPoolExecutor | None = None
        self._advancer: Advancer | None = None
        self._sfn: StepFunctionsEngine | None = None

    @property
    def sfn(self) -> StepFunctionsEngine:
        if self._sfn is None:
            self._sfn = self._make_engine(self)
        return self._sfn

    # ---- definitions -------------------------------------------------------------------------

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
        latest = self.store.get_pipeline(project_id, environment, name)
        stored = self._seal(project_id, environment, spec, latest)
        digest = digest_of(stored)
        if latest is not None and latest.digest == digest:
            return latest, False
        engine_ref = None
        if self.engine_name == "stepfunctions":
            engine_ref = self.sfn.deploy(project_id, environment, PipelineSpec.model_validate(stored))
        return self.store.register_pipeline(project_id, environment, name, stored, digest, engine_ref)

    def _check_steps(self, project_id: str, environment: str, spec: PipelineSpec) -> None:
        """Refuse steps this gateway cannot run: unknown actions, versions, sync actions, parameters."""
        for index, step in enumerate(spec.steps):
            at: list[str | int] = ["body", "steps", index]
            if step.kind == StepType.RUN_DOCKER_CONTAINER and self.engine_name == "local":
                executor = self.placement.pick(inline.inline_spec(spec, step), Mode.ASYNC)
                if executor.name == "process":
                    raise ValidationFailed.at(
                        [*at, "docker_image_name"],
                        "a Run Docker container step needs a container executor, and this gateway runs actions as "
                        "host processes; serve with HATCHWAY_EXECUTOR=docker (or auto with a Docker engine)",
                        "executor_unsupported",
                    )
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
        previous = {slot.path: value for slot, value in _secret_slots(latest.spec)} if latest else {}
        box = self.box
        for slot, value in list(_secret_slots(stored)):
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
            _put(stored, slot.path, value)
        return stored

    def spec_of(self, record: PipelineRecord) -> PipelineSpec:
        return spec_of(record)

    def _record(
        self, project_id: str, environment: str, name: str, version: int | None = None, include_deleted: bool = False
    ) -> PipelineRecord:
        record = self.store.get_pipeline(project_id, environment, name, version, include_deleted)
        if record is None:
            raise NotFound(f"no pipeline {name}" + (f" version {version}" if version else ""))
        return record

    def get(
        self, principal: Principal, project_id: str, environment: str, name: str, version: int | None = None
    ) -> PipelineRecord:
        self.auth.authorize(principal, project_id, environment, "actions:read")
        return self._record(project_id, environment, name, version)

    def list(
        self, principal: Principal, project_id: str, environment: str, limit: int, cursor: str | None
    ) -> Page[PipelineRecord]:
        self.auth.authorize(principal, project_id, environment, "actions:read")
        return self.store.list_pipelines(project_id, environment, limit, cursor)

    def delete(self, principal: Principal, project_id: str, environment: str, name: str) -> None:
        """Hide a pipeline (its versions and executions stay readable); on AWS, delete its state machine.

        Step Functions stops a deleted state machine's running executions at their next transition,
        so there a pipeline with unfinished executions is not deleted (409) until they end.
        """
        self.auth.authorize(principal, project_id, environment, "actions:write")
        if self.engine_name == "stepfunctions":
            record = self._record(project_id, environment, name)
            if self._unfinished(project_id, environment, name):
                raise Conflict(f"pipeline {name} has unfinished executions; terminate them or let them end first")
            if record.engine_ref:
                self.sfn.retire(record.engine_ref)
        if not self.store.delete_pipeline(project_id, environment, name):
            raise NotFound(f"no pipeline {name}")

    def _unfinished(self, project_id: str, environment: str, name: str) -> bool:
        for status in ExecutionStatus:
            if status.is_terminal:
                continue
            for execution in self.store.list_executions(
                project_id, environment, name, PREVIOUS_SCAN, None, status
            ).items:
                if not self._refreshed(execution).is_terminal:
                    return True
        return False

    def present(self, record: PipelineRecord) -> dict[str, Any]:
        """The API's pipeline body: the definition with secret values hidden, and its version."""
        body = _hidden(record.spec)
        return {
            **body,
            "name": record.name,
            "version": record.version,
            "digest": record.digest,
            "created_at": iso(record.created_at),
        }

    def step_view(
        self, principal: Principal, project_id: str, environment: str, name: str, step: str
    ) -> dict[str, Any]:
        """One step's definition with ``last_execution_status`` (Buddy's step view)."""
        record = self.get(principal, project_id, environment, name)
        index = next((i for i, s in enumerate(record.spec["steps"]) if s["name"] == step), None)
        if index is None:
            raise NotFound(f"pipeline {name} has no step {step}")
        last = "INITIAL"
        for execution in self.store.list_executions(project_id, environment, name, PREVIOUS_SCAN, None).items:
            state = next((s for s in execution.steps if s.name == step), None)
            if state is not None:
                last = self._refreshed(execution).step(step).status.value
                break
        return {
            **concise(self.present(record)["steps"][index]),
            "pipeline": {"name": name, "version": record.version},
            "last_execution_status": last,
        }

    # ---- executions --------------------------------------------------------------------------

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
            if self.store.get_execution(execution_id, project_id, environment) is None:
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
        record = self._record(project_id, environment, name)
        spec = self.spec_of(record)
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
            engine=self.engine_name,
        )
        if self.engine_name == "stepfunctions":
            execution.engine_ref = self.sfn.start(execution, record, self._previous_status(execution))
            execution.status = ExecutionStatus.INPROGRESS
            execution.started_at = now
        self.store.create_execution(execution)
        self.wake(execution.id)
        return execution

    def _execution(self, project_id: str, environment: str, name: str, execution_id: str) -> Execution:
        execution = self.store.get_execution(execution_id, project_id, environment)
        if execution is None or execution.pipeline != name:
            raise NotFound(f"no execution {execution_id} of pipeline {name}")
        return execution

    def get_execution(
        self, principal: Principal, project_id: str, environment: str, name: str, execution_id: str
    ) -> Execution:
        self.auth.authorize(principal, project_id, environment, "runs:read")
        return self._refreshed(self._execution(project_id, environment, name, execution_id))

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
        self._record(project_id, environment, name, include_deleted=True)
        page = self.store.list_executions(project_id, environment, name, limit, cursor, status)
        return Page([self._refreshed(e) for e in page.items], page.next)

    def _refreshed(self, execution: Execution) -> Execution:
        if execution.engine == "stepfunctions" and not execution.is_terminal:
            return self.sfn.refresh(execution)
        return execution

    def approve(
        self, principal: Principal, project_id: str, environment: str, name: str, execution_id: str
    ) -> Execution:
        """Let an execution waiting at its approval gate go on."""
        self.auth.authorize(principal, project_id, environment, "runs:write")
        execution = self._refreshed(self._execution(project_id, environment, name, execution_id))
        spec = self.spec_of(self._record(project_id, environment, name, execution.version, include_deleted=True))
        gate = spec.gate

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

        approved = self.store.update_execution(execution_id, change)
        if approved.engine == "stepfunctions" and gate is not None:
            self.sfn.approve(approved, gate.name)
        self.wake(execution_id)
        return approved

    def terminate(
        self, principal: Principal, project_id: str, environment: str, name: str, execution_id: str
    ) -> Execution:
        """Stop an execution: running steps are cancelled, then its ON_TERMINATE steps run."""
        self.auth.authorize(principal, project_id, environment, "runs:write")
        self._refreshed(self._execution(project_id, environment, name, execution_id))

        def change(current: Execution) -> Execution | None:
            if current.is_terminal:
                raise Conflict(f"execution {execution_id} already finished ({current.status.value})")
            if current.terminate_requested:
                return None
            current.terminate_requested = True
            current.status = ExecutionStatus.TERMINATING
            return current

        terminating = self.store.update_execution(execution_id, change)
        if terminating.engine == "stepfunctions":
            self.sfn.terminate(terminating)
            return self._refreshed(terminating)
        self.wake(execution_id)
        return terminating

    def present_execution(self, execution: Execution) -> dict[str, Any]:
        body = execution.to_api()
        body["variables"] = {k: (HIDDEN if is_ciphertext(v) else v) for k, v in execution.variables.items()}
        return body

    def _previous_status(self, execution: Execution) -> str | None:
        """The status of the pipeline's last execution that ended before this one began."""
        earlier = self.store.list_executions(
            execution.project_id, execution.environment, execution.pipeline, PREVIOUS_SCAN, None
        ).items
        for other in earlier:
            if other.id < execution.id and other.is_terminal:
                return other.status.value
        return None

    # ---- the local engine --------------------------------------------------------------------

    def advance(self, execution_id: str) -> Execution | None:
        """Bring one local execution a step further and carry out what its new state asks for."""
        seen: dict[str, Run | None] = {}
        specs: list[PipelineSpec] = []

        def change(current: Execution) -> Execution | None:
            if current.is_terminal or current.engine != "local":
                return None
            spec = self.spec_of(
                self._record(current.project_id, current.environment, current.pipeline, current.version, True)
            )
            specs[:] = [spec]
            seen.clear()
            seen.update({s.run_id: self.runs_repo.get_run(s.run_id) for s in current.steps if s.run_id})
            lost_allowance = self.settings.max_lost_attempts
            return plan(
                spec, current, seen, now_ms(), lambda: self._previous_status(current), new_run_id, lost_allowance
            )

        try:
            execution = self.store.update_execution(execution_id, change)
        except NotFound:
            return None
        if specs and not execution.is_terminal:
            self._effects(execution, specs[0], seen)
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
            self.create_step_run(execution, spec, step, run_id)
        except Conflict:
            return  # another advancer created it
        except HatchwayError as exc:
            self._step_failed(execution.id, step, run_id, _message(exc))

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
        return self.runs.enqueue(
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
        return self.runs.call_sync(
            SYSTEM, execution.project_id, execution.environment, name, step.sync_action or "", request, run_id
        )

    def _call_sync(self, execution: Execution, spec: PipelineSpec, step: Step, run_id: str) -> None:
        retry_later = False
        try:
            self.call_step_sync(execution, spec, step, run_id)
        except (Conflict, ActionFailed):
            pass  # the run exists and records its outcome
        except Overloaded:
            retry_later = True
        except HatchwayError as exc:
            if self.runs_repo.get_run(run_id) is None:
                self._step_failed(execution.id, step, run_id, _message(exc))
        except Exception:
            log.exception("a sync step failed inside the gateway", extra={"execution_id": execution.id})
        finally:
            with self._lock:
                self._launched.discard(run_id)
            if not retry_later:
                self.wake(execution.id)

    def _target(self, execution: Execution, step: Step) -> tuple[str, int | None, str | None]:
        """The action a step runs: (name, version, digest)."""
        if step.kind == StepType.RUN_DOCKER_CONTAINER:
            return inline.action_name(execution.pipeline, step.name), execution.version, None
        return step.action or "", step.version, step.digest

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
            self.store.update_execution(execution_id, change)
        finally:
            self.wake(execution_id)

    def _cancel(self, run: Run) -> None:
        with contextlib.suppress(Conflict, NotFound):
            self.runs.cancel(SYSTEM, run.project_id, run.environment, run.id)

    # ---- parameters --------------------------------------------------------------------------

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
        run = self.runs_repo.get_run(state.run_id) if state.run_id else None
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

    # ---- the advancer ------------------------------------------------------------------------

    def start_advancer(self) -> None:
        """Advance local executions in the background (the worker pool calls this)."""
        from hatchway.services.pipelines.local import Advancer

        with self._lock:
            if self._advancer is None and self.engine_name == "local":
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


# ---------------------------------------------------------------------------------------------
# secret values in a stored definition


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, HatchwayError) else str(exc)


def _secret_slots(spec: dict[str, Any]) -> Iterator[tuple[Slot, str]]:
    """Every secret value of a stored definition with where it sits."""
    for variable in spec.get("variables", []):
        if variable.get("encrypted"):
            yield Slot(("variables", variable["key"]), None), variable.get("value", "")
    for step in spec.get("steps", []):
        action = step.get("action")
        for name, value in (step.get("parameters") or {}).items():
            if is_secret_name(name) and isinstance(value, str):
                yield Slot(("steps", step["name"], "parameters", name), action), value
        for variable in step.get("variables", []):
            if variable.get("encrypted"):
                yield Slot(("steps", step["name"], "variables", variable["key"]), None), variable.get("value", "")


def _put(spec: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    if path[0] == "variables":
        next(v for v in spec["variables"] if v["key"] == path[1])["value"] = value
        return
    step = next(s for s in spec["steps"] if s["name"] == path[1])
    if path[2] == "parameters":
        step["parameters"][path[3]] = value
    else:
        next(v for v in step["variables"] if v["key"] == path[3])["value"] = value


def _hidden(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored definition with every secret value replaced by ``[hidden]``."""
    shown = copy.deepcopy(spec)
    for slot, _ in list(_secret_slots(shown)):
        _put(shown, slot.path, HIDDEN)
    return shown
