"""The pipeline routes (issue 9): definitions, a step's view, executions.

Definitions use the actions scopes (``actions:read``/``actions:write``): a pipeline is a composed
action. Executions, approvals and terminations use the runs scopes, since they run actions.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from hatchway.api import schemas as S
from hatchway.api.common import (
    Cursor,
    Environment,
    Limit,
    ProjectId,
    env_name,
    json_answer,
    new_router,
    page_answer,
    public_base,
    request_deadline,
)
from hatchway.api.common import principal as common_principal
from hatchway.api.present import execution_body, pipeline_body, step_body
from hatchway.domain.pipelines.records import LAST_EXECUTION_STATUSES
from hatchway.domain.pipelines.spec import PipelineSpec, Scalar
from hatchway.domain.records import DEFAULT_PAGE

if TYPE_CHECKING:
    from hatchway.compat import Compat
    from hatchway.domain.tenants import Principal
    from hatchway.ports import Telemetry
    from hatchway.services import Services

PipelineName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="pipeline name")]
StepName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$", description="step name")]
ExecutionId = Annotated[str, Path(pattern=r"^pex_[0-9A-Z]{26}$", description="execution id")]

STRING, INT, TIME = S.STRING, S.INT, S.TIME
STEP_STATUSES = ["ENQUEUED", "INPROGRESS", "SUCCESSFUL", "FAILED", "WARNING", "SKIPPED", "NOT_EXECUTED",
                 "TERMINATED", "WAITING_FOR_APPROVE"]  # fmt: skip
EXECUTION_STATUSES = ["ENQUEUED", "INPROGRESS", "WAITING_FOR_APPROVE", "TERMINATING", "SUCCESSFUL", "WARNING",
                      "FAILED", "TERMINATED"]  # fmt: skip

PIPELINE = S.obj(
    ["name", "version", "digest", "created_at", "steps", "variables"],
    name=STRING,
    version=INT,
    digest={"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
    created_at=TIME,
    description=STRING,
    variables={"type": "array", "items": {"type": "object"}},
    steps={"type": "array", "items": S.obj(["name", "type"], name=STRING, type=STRING)},
)

STEP_STATE = S.obj(
    ["name", "status", "run_id", "started_at", "finished_at"],
    name=STRING,
    status={"type": "string", "enum": STEP_STATUSES},
    run_id=S.nullable(STRING),
    attempt=INT,
    started_at=S.nullable(TIME),
    finished_at=S.nullable(TIME),
    status_reason=S.nullable(STRING),
    approved_by=STRING,
)

EXECUTION = S.obj(
    ["id", "project_id", "environment", "pipeline", "version", "status", "variables", "steps", "created_at"],
    id={"type": "string", "pattern": "^pex_[0-9A-Z]{26}$"},
    project_id=STRING,
    environment=STRING,
    pipeline=STRING,
    version=INT,
    status={"type": "string", "enum": EXECUTION_STATUSES},
    status_reason=S.nullable(STRING),
    outcome=S.nullable(STRING),
    variables={"type": "object", "additionalProperties": STRING},
    steps={"type": "array", "items": STEP_STATE},
    created_at=TIME,
    started_at=S.nullable(TIME),
    finished_at=S.nullable(TIME),
    triggered_by=S.nullable(STRING),
)

STEP_VIEW = S.obj(
    ["name", "type", "pipeline", "last_execution_status", "url", "html_url"],
    name=STRING,
    type=STRING,
    pipeline=S.obj(
        ["name", "version", "url", "html_url"], name=STRING, version=INT, url=STRING, html_url=S.nullable(STRING)
    ),
    last_execution_status={"type": "string", "enum": list(LAST_EXECUTION_STATUSES)},
    url=STRING,
    html_url=S.nullable(STRING),
)


class VariableValue(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid")

    key: str
    value: Scalar


class ExecutionRequest(BaseModel):
    """The body of ``POST .../executions``: overrides of settable variables, as a map or Buddy's list."""

    model_config = ConfigDict(defer_build=True, extra="forbid")

    variables: dict[str, Scalar] | list[VariableValue] = Field(default_factory=dict)
    comment: Annotated[str, Field(max_length=1000)] | None = None

    def overrides(self) -> dict[str, Any]:
        if isinstance(self.variables, list):
            return {item.key: item.value for item in self.variables}
        return dict(self.variables)


def router(services: Services, compat: Compat, telemetry: Telemetry) -> Router:
    """The pipeline and execution routes."""
    app = new_router()
    definitions, executions = services.pipelines.definitions, services.pipelines.executions
    answer = json_answer
    page = partial(page_answer, max_bytes=services.settings.server.max_answer_bytes)

    def principal() -> Principal:
        return common_principal(services.auth, app.current_event.headers)

    def console(fragment: str) -> str | None:
        """The console page, when this gateway serves the console (create_app includes it then)."""
        return f"/ui/#/{fragment}" if services.settings.server.is_console_enabled else None

    @app.put(
        "/v1/projects/<project_id>/pipelines/<name>",
        tags=["pipelines"],
        summary="Create or update a pipeline (a new version unless identical)",
        responses={
            200: {"description": "identical to the latest version", "content": {S.JSON: {"schema": PIPELINE}}},
            **S.responses(201, PIPELINE, "a new version", 400, 404),
        },
        status_code=201,
    )
    def put_pipeline(
        project_id: ProjectId,
        name: PipelineName,
        body: Annotated[PipelineSpec, Body()],
        environment: Environment = None,
    ) -> Response[str]:
        record, created = definitions.define(principal(), project_id, env_name(environment), name, body)
        return answer(201 if created else 200, pipeline_body(record))

    @app.get(
        "/v1/projects/<project_id>/pipelines",
        tags=["pipelines"],
        summary="List pipelines (their latest versions)",
        responses=S.responses(200, S.page(PIPELINE), "a page of pipelines"),
    )
    def list_pipelines(
        project_id: ProjectId, environment: Environment = None, limit: Limit = DEFAULT_PAGE, cursor: Cursor = None
    ) -> Response[str]:
        who, env = principal(), env_name(environment)
        return page(lambda size: definitions.list(who, project_id, env, size, cursor), limit, pipeline_body)

    @app.get(
        "/v1/projects/<project_id>/pipelines/<name>",
        tags=["pipelines"],
        summary="Get a pipeline (latest, or ?version=N)",
        responses=S.responses(200, PIPELINE, "the pipeline", 404),
    )
    def get_pipeline(
        project_id: ProjectId,
        name: PipelineName,
        environment: Environment = None,
        version: Annotated[int | None, Query(ge=1)] = None,
    ) -> Response[str]:
        record = definitions.get(principal(), project_id, env_name(environment), name, version)
        return answer(200, pipeline_body(record))

    @app.delete(
        "/v1/projects/<project_id>/pipelines/<name>",
        tags=["pipelines"],
        summary="Delete a pipeline (its executions stay readable)",
        responses=S.responses(204, None, "deleted", 404),
    )
    def delete_pipeline(project_id: ProjectId, name: PipelineName, environment: Environment = None) -> Response[str]:
        definitions.delete(principal(), project_id, env_name(environment), name)
        return Response(204, S.JSON, "")

    @app.get(
        "/v1/projects/<project_id>/pipelines/<name>/steps/<step>",
        tags=["pipelines"],
        summary="Get a step's definition and the status of its last execution",
        responses=S.responses(200, STEP_VIEW, "the step", 404),
    )
    def get_step(
        project_id: ProjectId, name: PipelineName, step: StepName, environment: Environment = None
    ) -> Response[str]:
        view = definitions.step_view(principal(), project_id, env_name(environment), name, step)
        root = public_base(app.current_event.raw_event)
        pipeline_url = f"{root}/v1/projects/{project_id}/pipelines/{name}"
        step_page, pipeline_page = console(f"pipelines/{name}/steps/{step}"), console(f"pipelines/{name}")
        body = step_body(view)
        body["pipeline"].update(url=pipeline_url, html_url=root + pipeline_page if pipeline_page else None)
        # Buddy's html_url is the step's own page (the console shows the pipeline with that step)
        return answer(200, {**body, "url": f"{pipeline_url}/steps/{step}",
                            "html_url": root + step_page if step_page else None})  # fmt: skip

    @app.post(
        "/v1/projects/<project_id>/pipelines/<name>/executions",
        tags=["pipelines"],
        summary="Start an execution (settable variables may be overridden)",
        responses=S.responses(202, EXECUTION, "the execution, ENQUEUED", 400, 404),
        status_code=202,
    )
    def start_execution(
        project_id: ProjectId,
        name: PipelineName,
        body: Annotated[ExecutionRequest | None, Body()] = None,
        environment: Environment = None,
        idempotency_key: Annotated[str | None, Header(alias="idempotency-key", max_length=255)] = None,
    ) -> Response[str]:
        overrides = body.overrides() if body else {}
        execution = executions.execute(
            principal(), project_id, env_name(environment), name, overrides, idempotency_key,
            request_deadline(app.lambda_context),
        )  # fmt: skip
        location = f"/v1/projects/{project_id}/pipelines/{name}/executions/{execution.id}"
        return answer(202, execution_body(execution), {"Location": location})

    @app.get(
        "/v1/projects/<project_id>/pipelines/<name>/executions",
        tags=["pipelines"],
        summary="List a pipeline's executions, newest first",
        responses=S.responses(200, S.page(EXECUTION), "a page of executions", 404),
    )
    def list_executions(
        project_id: ProjectId,
        name: PipelineName,
        environment: Environment = None,
        status: Annotated[str | None, Query()] = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> Response[str]:
        who, env = principal(), env_name(environment)
        listed = partial(executions.list_executions, who, project_id, env, name)
        return page(lambda size: listed(size, cursor, status), limit, execution_body)

    @app.get(
        "/v1/projects/<project_id>/pipelines/<name>/executions/<execution_id>",
        tags=["pipelines"],
        summary="Get an execution with the status of each step",
        responses=S.responses(200, EXECUTION, "the execution", 404),
    )
    def get_execution(
        project_id: ProjectId, name: PipelineName, execution_id: ExecutionId, environment: Environment = None
    ) -> Response[str]:
        execution = executions.get_execution(principal(), project_id, env_name(environment), name, execution_id)
        return answer(200, execution_body(execution))

    @app.post(
        "/v1/projects/<project_id>/pipelines/<name>/executions/<execution_id>/approve",
        tags=["pipelines"],
        summary="Approve an execution waiting at its approval gate",
        responses=S.responses(200, EXECUTION, "the execution, going on", 404, 409),
    )
    def approve_execution(
        project_id: ProjectId, name: PipelineName, execution_id: ExecutionId, environment: Environment = None
    ) -> Response[str]:
        execution = executions.approve(principal(), project_id, env_name(environment), name, execution_id)
        return answer(200, execution_body(execution))

    @app.post(
        "/v1/projects/<project_id>/pipelines/<name>/executions/<execution_id>/terminate",
        tags=["pipelines"],
        summary="Terminate an execution (its ON_TERMINATE steps then run)",
        responses=S.responses(202, EXECUTION, "the execution, TERMINATING", 404, 409),
        status_code=202,
    )
    def terminate_execution(
        project_id: ProjectId, name: PipelineName, execution_id: ExecutionId, environment: Environment = None
    ) -> Response[str]:
        execution = executions.terminate(principal(), project_id, env_name(environment), name, execution_id)
        return answer(202, execution_body(execution))

    return app
