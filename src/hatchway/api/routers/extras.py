"""Ductape's features: cache tags (``.../caches/{tag}``), session types (``.../sessions/{tag}``) and
the secret that signs run callbacks (``.../callbacks/secret``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import Field

from hatchway.api import schemas as S
from hatchway.api.common import SAFE_HEADERS, Environment, ProjectId, caller, env_name, json_answer, new_router
from hatchway.api.models import StrictBody

if TYPE_CHECKING:
    from hatchway.compat import Compat
    from hatchway.ports import Telemetry
    from hatchway.services import Services


class CacheTagBody(StrictBody):
    ttl_seconds: Annotated[int, Field(ge=1, le=30 * 86400)]


class SessionTypeBody(StrictBody):
    algorithm: Literal["HS256", "RS256", "ES256"]
    secret: Annotated[str, Field(min_length=16, max_length=4096)] | None = None
    public_key: Annotated[str, Field(max_length=16384)] | None = None
    issuer: Annotated[str, Field(max_length=512)] | None = None
    audience: Annotated[str, Field(max_length=512)] | None = None


CACHE_TAG = S.obj(["tag", "ttl_seconds"], tag=S.STRING, ttl_seconds=S.INT)
SESSION_TYPE = S.obj(
    ["tag", "algorithm"],
    tag=S.STRING,
    algorithm=S.STRING,
    issuer=S.nullable(S.STRING),
    audience=S.nullable(S.STRING),
    has_secret={"type": "boolean"},
)


def router(services: Services, compat: Compat, telemetry: Telemetry) -> Router:
    """The cache tag, session type and callback secret routes."""
    app = new_router()
    who = caller(services.auth, app)

    # ---- cache tags ------------------------------------------------------------------------

    @app.put(
        "/v1/projects/<project_id>/caches/<tag>",
        tags=["caches"],
        summary="Set a cache tag's lifetime",
        responses=S.responses(200, CACHE_TAG, "the tag", 404),
    )
    def put_cache(
        project_id: ProjectId, tag: str, body: Annotated[CacheTagBody, Body()], environment: Environment = None
    ) -> Response[str]:
        cache_tag = services.caches.set(who(), project_id, env_name(environment), tag, body.ttl_seconds)
        return json_answer(200, cache_tag.to_api())

    @app.get(
        "/v1/projects/<project_id>/caches/<tag>",
        tags=["caches"],
        summary="Get a cache tag",
        responses=S.responses(200, CACHE_TAG, "the tag", 404),
    )
    def get_cache(project_id: ProjectId, tag: str, environment: Environment = None) -> Response[str]:
        return json_answer(200, services.caches.get(who(), project_id, env_name(environment), tag).to_api())

    @app.delete(
        "/v1/projects/<project_id>/caches/<tag>",
        tags=["caches"],
        summary="Delete a cache tag and the answers kept under it",
        responses=S.responses(204, None, "deleted", 404),
    )
    def delete_cache(project_id: ProjectId, tag: str, environment: Environment = None) -> Response[str]:
        services.caches.delete(who(), project_id, env_name(environment), tag)
        return Response(204, "application/json", "", headers=dict(SAFE_HEADERS))

    # ---- session types ---------------------------------------------------------------------

    @app.put(
        "/v1/projects/<project_id>/sessions/<tag>",
        tags=["sessions"],
        summary="Register a session type (an HS256 secret or an RS256/ES256 public key)",
        responses=S.responses(200, SESSION_TYPE, "the session type (never its secret)", 404),
    )
    def put_session(
        project_id: ProjectId, tag: str, body: Annotated[SessionTypeBody, Body()], environment: Environment = None
    ) -> Response[str]:
        described = services.sessions.put(
            who(), project_id, env_name(environment), tag, body.model_dump(exclude_none=True)
        )
        return json_answer(200, described.to_api())

    @app.get(
        "/v1/projects/<project_id>/sessions/<tag>",
        tags=["sessions"],
        summary="Get a session type",
        responses=S.responses(200, SESSION_TYPE, "the session type (never its secret)", 404),
    )
    def get_session(project_id: ProjectId, tag: str, environment: Environment = None) -> Response[str]:
        return json_answer(200, services.sessions.get(who(), project_id, env_name(environment), tag).to_api())

    @app.delete(
        "/v1/projects/<project_id>/sessions/<tag>",
        tags=["sessions"],
        summary="Delete a session type",
        responses=S.responses(204, None, "deleted", 404),
    )
    def delete_session(project_id: ProjectId, tag: str, environment: Environment = None) -> Response[str]:
        services.sessions.delete(who(), project_id, env_name(environment), tag)
        return Response(204, "application/json", "", headers=dict(SAFE_HEADERS))

    # ---- callbacks -------------------------------------------------------------------------

    secret_answer = S.obj(["secret"], secret=S.STRING)

    @app.get(
        "/v1/projects/<project_id>/callbacks/secret",
        tags=["callbacks"],
        summary="The secret that signs this project's run callbacks (created on first use)",
        responses=S.responses(200, secret_answer, "the signing secret", 404),
    )
    def get_callback_secret(project_id: ProjectId) -> Response[str]:
        return json_answer(200, {"secret": services.callbacks.secret(who(), project_id, rotate=False)})

    @app.post(
        "/v1/projects/<project_id>/callbacks/secret",
        tags=["callbacks"],
        summary="Rotate the callback signing secret",
        responses=S.responses(200, secret_answer, "the new signing secret", 404),
    )
    def rotate_callback_secret(project_id: ProjectId) -> Response[str]:
        return json_answer(200, {"secret": services.callbacks.secret(who(), project_id, rotate=True)})

    return app
