"""Action versions: register one from its action.json, list, read, delete."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from hatchway.api import schemas as S
from hatchway.api.common import (
    JSON,
    Cursor,
    Environment,
    Limit,
    ProjectId,
    caller,
    env_name,
    json_answer,
    new_router,
    pager,
)
from hatchway.domain.actions import ActionRecord
from hatchway.domain.records import DEFAULT_PAGE
from hatchway.domain.spec import ActionSpec

if TYPE_CHECKING:
    from hatchway.compat import Compat
    from hatchway.ports import Telemetry
    from hatchway.services import Services


def router(services: Services, compat: Compat, telemetry: Telemetry) -> Router:
    """The action routes."""
    app = new_router()
    actions = services.actions
    principal = caller(services.auth, app)
    page = pager(services.settings)

    @app.post(
        "/v1/projects/<project_id>/actions",
        tags=["actions"],
        summary="Register an action version from its action.json",
        responses={
            200: {
                "description": "identical to the latest version; nothing changed",
                "content": {JSON: {"schema": S.ACTION}},
            },
            **S.responses(201, S.ACTION, "a new version", 404),
        },
        status_code=201,
    )
    def register_action(
        project_id: ProjectId, body: Annotated[ActionSpec, Body()], environment: Environment = None
    ) -> Response[str]:
        registered = actions.register(principal(), project_id, env_name(environment), body)
        return json_answer(201 if registered.created else 200, registered.record.to_api())

    @app.get(
        "/v1/projects/<project_id>/actions",
        tags=["actions"],
        summary="List actions (their latest versions)",
        responses=S.responses(200, S.page(S.ACTION), "a page of actions"),
    )
    def list_actions(
        project_id: ProjectId,
        environment: Environment = None,
        tag: Annotated[str | None, Query()] = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> Response[str]:
        who, env = principal(), env_name(environment)
        return page(lambda size: actions.list(who, project_id, env, size, cursor, tag), limit, ActionRecord.to_api)

    @app.get(
        "/v1/projects/<project_id>/actions/<name>",
        tags=["actions"],
        summary="Get an action (latest, or a version or digest)",
        responses=S.responses(200, S.ACTION, "the action version", 404),
    )
    def get_action(
        project_id: ProjectId,
        name: str,
        environment: Environment = None,
        version: Annotated[int | None, Query(ge=1)] = None,
        digest: Annotated[str | None, Query(pattern=r"^sha256:[0-9a-f]{64}$")] = None,
    ) -> Response[str]:
        record = actions.get(principal(), project_id, env_name(environment), name, version, digest)
        return json_answer(200, record.to_api())

    @app.get(
        "/v1/projects/<project_id>/actions/<name>/versions",
        tags=["actions"],
        summary="List an action's versions",
        responses=S.responses(200, S.page(S.ACTION), "versions, newest first", 404),
    )
    def list_versions(
        project_id: ProjectId,
        name: str,
        environment: Environment = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> Response[str]:
        who, env = principal(), env_name(environment)
        return page(lambda size: actions.versions(who, project_id, env, name, size, cursor), limit, ActionRecord.to_api)

    @app.delete(
        "/v1/projects/<project_id>/actions/<name>",
        tags=["actions"],
        summary="Delete an action (its runs stay readable)",
        responses=S.responses(204, None, "deleted", 404),
    )
    def delete_action(project_id: ProjectId, name: str, environment: Environment = None) -> Response[str]:
        actions.delete(principal(), project_id, env_name(environment), name)
        return Response(204, JSON, "")

    return app
