"""Projects, their tokens, and encrypting secret values for them."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import Field, model_validator

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
    page_of,
    pager,
)
from hatchway.api.models import ENVIRONMENT_PATTERN, PROJECT_ID_PATTERN, StrictBody
from hatchway.domain.records import DEFAULT_PAGE
from hatchway.domain.tenants import Project

if TYPE_CHECKING:
    from hatchway.compat import Compat
    from hatchway.ports import Telemetry
    from hatchway.services import Services


class ProjectCreate(StrictBody):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    id: Annotated[str, Field(pattern=PROJECT_ID_PATTERN, max_length=64)] | None = None


class TokenCreate(StrictBody):
    scopes: Annotated[list[str], Field(min_length=1)]
    environments: list[Annotated[str, Field(pattern=ENVIRONMENT_PATTERN)]] | None = None
    expires_at: datetime | None = None
    expires_in_seconds: Annotated[int, Field(ge=1, le=10 * 365 * 86400)] | None = None
    name: Annotated[str, Field(max_length=128)] | None = None

    @model_validator(mode="after")
    def _one_expiry(self) -> TokenCreate:
        if self.expires_at is not None and self.expires_in_seconds is not None:
            raise ValueError("give expires_at or expires_in_seconds, not both")
        return self


class EncryptRequest(StrictBody):
    value: str | None = None
    values: dict[str, str] | None = None
    action: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> EncryptRequest:
        if (self.value is None) == (self.values is None):
            raise ValueError("give either value or values")
        return self


def router(services: Services, compat: Compat, telemetry: Telemetry) -> Router:
    """The project, token and encryption routes."""
    app = new_router()
    tenants = services.tenants
    principal = caller(services.auth, app)
    page = pager(services.settings)

    @app.post(
        "/v1/projects",
        tags=["projects"],
        summary="Create a project (global admin)",
        responses=S.responses(201, S.PROJECT, "the new project", 409),
    )
    def create_project(body: Annotated[ProjectCreate, Body()]) -> Response[str]:
        project = tenants.create_project(principal(), body.name, body.id)
        return json_answer(201, project.to_api())

    @app.get(
        "/v1/projects",
        tags=["projects"],
        summary="List the projects the token can see (the global admin: all; a project token: its own)",
        responses=S.responses(200, S.page(S.PROJECT), "a page of projects, by id"),
    )
    def list_projects(limit: Limit = DEFAULT_PAGE, cursor: Cursor = None) -> Response[str]:
        who = principal()
        return page(lambda size: tenants.list_projects(who, size, cursor), limit, Project.to_api)

    @app.get(
        "/v1/projects/<project_id>",
        tags=["projects"],
        summary="Get a project",
        responses=S.responses(200, S.PROJECT, "the project", 404),
    )
    def get_project(project_id: ProjectId) -> Response[str]:
        return json_answer(200, tenants.get_project(principal(), project_id).to_api())

    @app.post(
        "/v1/projects/<project_id>/tokens",
        tags=["tokens"],
        summary="Create a token (shown once)",
        responses=S.responses(201, S.NEW_TOKEN, "the new token", 404),
    )
    def create_token(project_id: ProjectId, body: Annotated[TokenCreate, Body()]) -> Response[str]:
        expires_at = None
        if body.expires_at is not None:
            moment = body.expires_at if body.expires_at.tzinfo else body.expires_at.replace(tzinfo=UTC)
            expires_at = int(moment.timestamp() * 1000)
        elif body.expires_in_seconds is not None:
            expires_at = int(time.time() * 1000) + body.expires_in_seconds * 1000
        made = tenants.create_token(principal(), project_id, body.scopes, body.environments, expires_at, body.name)
        return json_answer(201, {"token": made.token, **made.record.to_api()})

    @app.get(
        "/v1/projects/<project_id>/tokens",
        tags=["tokens"],
        summary="List tokens (never their values)",
        responses=S.responses(200, S.page(S.TOKEN), "the project's tokens", 404),
    )
    def list_tokens(project_id: ProjectId) -> Response[str]:
        tokens = tenants.list_tokens(principal(), project_id)
        return json_answer(200, page_of([t.to_api() for t in tokens], None))

    @app.delete(
        "/v1/projects/<project_id>/tokens/<token_id>",
        tags=["tokens"],
        summary="Revoke a token",
        responses=S.responses(204, None, "revoked; it stops working at once", 404),
    )
    def revoke_token(project_id: ProjectId, token_id: str) -> Response[str]:
        tenants.revoke_token(principal(), project_id, token_id)
        return Response(204, JSON, "")

    # ---- secrets -------------------------------------------------------------------------

    @app.post(
        "/v1/projects/<project_id>/encrypt",
        tags=["secrets"],
        summary="Encrypt secret values",
        responses=S.responses(200, S.ENCRYPTED, "ciphertexts bound to this project and environment", 404),
    )
    def encrypt(
        project_id: ProjectId, body: Annotated[EncryptRequest, Body()], environment: Environment = None
    ) -> Response[str]:
        who, env = principal(), env_name(environment)
        if body.value is not None:
            return json_answer(200, {"ciphertext": tenants.encrypt(who, project_id, env, body.value, body.action)})
        values = {
            k: tenants.encrypt(who, project_id, env, v, body.action, ["body", "values", k])
            for k, v in (body.values or {}).items()
        }
        return json_answer(200, {"values": values})

    return app
