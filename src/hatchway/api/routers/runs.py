"""Runs: submit one (async), call a sync action, list, read, read the log, cancel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Query

from hatchway.api import schemas as S
from hatchway.api.common import (
    Cursor,
    Environment,
    Limit,
    ProjectId,
    caller,
    env_name,
    json_answer,
    new_router,
    pager,
    request_deadline,
)
from hatchway.api.models import RunRequestBody
from hatchway.api.present import listed_run, run_body, sync_body
from hatchway.compat import ductape
from hatchway.domain.records import DEFAULT_PAGE
from hatchway.domain.runs import LogEntry
from hatchway.errors import ValidationFailed

if TYPE_CHECKING:
    from hatchway.compat import Compat
    from hatchway.ports import Telemetry
    from hatchway.services import Services


def router(services: Services, compat: Compat, telemetry: Telemetry) -> Router:
    """The run routes."""
    app = new_router()
    runs = services.runs
    principal = caller(services.auth, app)
    page = pager(services.settings)

    @app.post(
        "/v1/projects/<project_id>/actions/<name>/runs",
        tags=["runs"],
        summary="Start an async run",
        responses=S.responses(202, S.RUN, "the run, ENQUEUED", 400, 404, 409),
        status_code=202,
    )
    def submit_run(
        project_id: ProjectId,
        name: str,
        body: Annotated[RunRequestBody | None, Body()] = None,
        environment: Environment = None,
        idempotency_key: Annotated[str | None, Header(alias="idempotency-key", max_length=255)] = None,
    ) -> Response[str]:
        request, deadline = ductape.run_request(body or RunRequestBody()), request_deadline(app.lambda_context)
        run = runs.submit(principal(), project_id, env_name(environment), name, request, idempotency_key, deadline)
        return json_answer(202, run_body(run), {"Location": f"/v1/projects/{project_id}/runs/{run.id}"})

    @app.post(
        "/v1/projects/<project_id>/actions/<name>/sync/<sync_action>",
        tags=["runs"],
        summary="Call a sync action and wait for its JSON answer",
        responses=S.responses(200, S.SYNC_RESULT, "the action's answer", 400, 404, 409, 429, 504),
    )
    def call_sync(
        project_id: ProjectId,
        name: str,
        sync_action: str,
        body: Annotated[RunRequestBody | None, Body()] = None,
        environment: Environment = None,
    ) -> Response[str]:
        request = ductape.run_request(body or RunRequestBody())
        outcome = runs.call_sync(principal(), project_id, env_name(environment), name, sync_action, request)
        cache = {"X-Hatchway-Cache": "hit" if outcome.cached else "miss"} if outcome.cached is not None else None
        return json_answer(200, sync_body(outcome), cache)

    @app.get(
        "/v1/projects/<project_id>/runs",
        tags=["runs"],
        summary="List runs, newest first (each without os: GET the run for the head and tail of its log)",
        responses=S.responses(200, S.page(S.RUN_SUMMARY), "a page of runs"),
    )
    def list_runs(
        project_id: ProjectId,
        environment: Environment = None,
        action: Annotated[str | None, Query()] = None,
        status: Annotated[str | None, Query()] = None,
        external_user_id: Annotated[str | None, Query()] = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> Response[str]:
        filters = {"action": action or "", "status": status or "", "external_user_id": external_user_id or ""}
        who, env = principal(), env_name(environment)
        # a page holds each run without the head and tail of its log (os): GET .../runs/{id} has it
        return page(lambda size: runs.list(who, project_id, env, size, cursor, filters), limit, listed_run)

    @app.get(
        "/v1/projects/<project_id>/runs/<run_id>",
        tags=["runs"],
        summary="Get a run",
        responses=S.responses(200, S.RUN, "the run", 404),
    )
    def get_run(project_id: ProjectId, run_id: str, environment: Environment = None) -> Response[str]:
        run = runs.get(principal(), project_id, env_name(environment), run_id)
        return json_answer(200, run_body(run))

    @app.get(
        "/v1/projects/<project_id>/runs/<run_id>/logs",
        tags=["runs"],
        summary="Read a run's log",
        responses=S.responses(200, S.page(S.LOG_ENTRY), "log entries after the given seq", 404),
    )
    def read_logs(
        project_id: ProjectId,
        run_id: str,
        environment: Environment = None,
        after: Annotated[int, Query(ge=0, description="return entries with seq above this")] = 0,
        limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
        cursor: Annotated[
            str | None, Query(max_length=20, description="the previous page's next (the same as after=)")
        ] = None,
    ) -> Response[str]:
        if cursor is not None:
            # a log's next is the seq its page ended at: as a cursor, it reads on from there
            if not (cursor.isascii() and cursor.isdigit()):
                raise ValidationFailed.at(["query", "cursor"], "not a cursor this API issued")
            after = int(cursor)
        who, env = principal(), env_name(environment)
        return page(lambda size: runs.logs(who, project_id, env, run_id, after, size), limit, LogEntry.to_api)

    @app.post(
        "/v1/projects/<project_id>/runs/<run_id>/cancel",
        tags=["runs"],
        summary="Cancel a run",
        responses=S.responses(202, S.RUN, "the run, TERMINATING or TERMINATED", 404, 409),
        status_code=202,
    )
    def cancel_run(project_id: ProjectId, run_id: str, environment: Environment = None) -> Response[str]:
        run = runs.cancel(principal(), project_id, env_name(environment), run_id)
        return json_answer(202, run_body(run))

    return app
