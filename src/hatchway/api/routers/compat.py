"""Routes for what users bring from other platforms, and the features those need.

* Keboola: ``POST .../actions/{name}/action/{sync_action}`` with ``{"configData": ...}``; the
  answer is the action's own JSON, unwrapped.
* Pipedream Connect: ``POST /v1/connect/{project_id}/actions/run`` with the ``x-pd-environment``
  header; the answer is ``{exports, os, ret, stash_id}``.
* Roboto: project files (``PUT/GET/DELETE .../files/{path}``) that runs name as ``inputs``, and
  the artifacts a run leaves in ``out/files/`` (``GET .../runs/{id}/artifacts[/{path}]``).
* Ductape: cache tags (``.../caches/{tag}``), session types (``.../sessions/{tag}``) and the
  callback signing secret (``.../callbacks/secret``).

File bodies are raw bytes and file paths contain ``/``, which the resolver's routes cannot
express; those few routes are served by :class:`RawRoute` before the resolver, with the same
authentication, error shape and OpenAPI documentation as every other route.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header

from hatchway.api import schemas as S
from hatchway.api.common import (
    SAFE_HEADERS,
    Environment,
    ProjectId,
    env_name,
    event_answer,
    header,
    json_answer,
    page_of,
)
from hatchway.api.common import principal as common_principal
from hatchway.api.errors import error_answer
from hatchway.api.models import CacheTagBody, ConnectRunBody, KeboolaActionBody, OAuthTokenBody, SessionTypeBody
from hatchway.api.present import file_body
from hatchway.compat.connect import ConnectRuns
from hatchway.domain.runs import RunRequest
from hatchway.domain.tenants import Principal
from hatchway.errors import HatchwayError
from hatchway.services import Services
from hatchway.services.files import FileService

Handler = Callable[[dict[str, Any], Principal, "re.Match[str]"], dict[str, Any]]

FILE_INFO = S.obj(
    ["path", "size"], path=S.STRING, size=S.INT, sha256=S.nullable(S.STRING), modified_at=S.nullable(S.TIME)
)
CACHE_TAG = S.obj(["tag", "ttl_seconds"], tag=S.STRING, ttl_seconds=S.INT)
SESSION_TYPE = S.obj(
    ["tag", "algorithm"],
    tag=S.STRING,
    algorithm=S.STRING,
    issuer=S.nullable(S.STRING),
    audience=S.nullable(S.STRING),
    has_secret={"type": "boolean"},
)
CONNECT_RESULT = S.obj(
    ["exports", "os", "ret", "stash_id"],
    exports={"type": "object"},
    os={"type": "array", "items": S.obj(["k", "ts", "msg"], k=S.STRING, ts=S.INT, msg=S.STRING)},
    ret={},
    stash_id=S.nullable(S.STRING),
)


@dataclass
class RawRoute:
    """A route served before the resolver (raw bytes, paths with slashes)."""

    method: str
    pattern: re.Pattern[str]
    handle: Handler
    doc_path: str
    doc: dict[str, Any]


def _bytes(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()


def _binary(data: bytes, name: str) -> dict[str, Any]:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name.rsplit("/", 1)[-1]) or "file"
    return {
        "statusCode": 200,
        "headers": {
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{safe}"',
            **SAFE_HEADERS,
        },
        "body": base64.b64encode(data).decode(),
        "isBase64Encoded": True,
        "cookies": [],
    }


def raw_routes(file_service: FileService) -> list[RawRoute]:
    """The byte-level routes: project files and run artifacts."""
    files = re.compile(r"^/v1/projects/(?P<project>proj_[A-Za-z0-9]+)/files/(?P<path>.+)$")
    artifact = re.compile(
        r"^/v1/projects/(?P<project>proj_[A-Za-z0-9]+)/runs/(?P<run>run_[0-9A-Z]+)/artifacts/(?P<path>.+)$"
    )

    def env(event: dict[str, Any]) -> str:
        return env_name(header(event, "x-hatchway-environment"))

    def put_file(event: dict[str, Any], who: Principal, m: re.Match[str]) -> dict[str, Any]:
        stored = file_service.put(who, m["project"], env(event), m["path"], _bytes(event))
        return event_answer(201, file_body(stored), {})

    def get_file(event: dict[str, Any], who: Principal, m: re.Match[str]) -> dict[str, Any]:
        return _binary(file_service.get(who, m["project"], env(event), m["path"]), m["path"])

    def delete_file(event: dict[str, Any], who: Principal, m: re.Match[str]) -> dict[str, Any]:
        file_service.delete(who, m["project"], env(event), m["path"])
        return {"statusCode": 204, "headers": dict(SAFE_HEADERS), "body": "", "isBase64Encoded": False}

    def get_artifact(event: dict[str, Any], who: Principal, m: re.Match[str]) -> dict[str, Any]:
        data = file_service.artifact(who, m["project"], env(event), m["run"], m["path"])
        return _binary(data, m["path"])

    project_schema = {"type": "string", "pattern": "^proj_[a-zA-Z0-9]+$"}
    path_params = [
        {"name": "project_id", "in": "path", "required": True, "schema": project_schema},
        {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}, "description": "a/b.csv"},
        {"name": "x-hatchway-environment", "in": "header", "required": False, "schema": {"type": "string"}},
    ]
    binary = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}

    def doc(
        summary: str, ok: int, schema: dict[str, Any] | None, *, upload: bool = False, run: bool = False
    ) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "tags": ["files"],
            "summary": summary,
            "parameters": path_params[:1]
            + ([{"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}] if run else [])
            + path_params[1:],
            "responses": dict(S.responses(ok, schema, summary, 404)),
        }
        if upload:
            operation["requestBody"] = {"required": False, "content": binary}  # an empty file is a file
        if ok == 200 and schema is None:
            operation["responses"][200] = {"description": summary, "content": binary}
        return operation

    file_doc = "/v1/projects/{project_id}/files/{path}"
    artifact_doc = "/v1/projects/{project_id}/runs/{run_id}/artifacts/{path}"
    return [
        RawRoute("PUT", files, put_file, file_doc, doc("Upload a project file", 201, FILE_INFO, upload=True)),
        RawRoute("GET", files, get_file, file_doc, doc("Download a project file", 200, None)),
        RawRoute("DELETE", files, delete_file, file_doc, doc("Delete a project file", 204, None)),
        RawRoute("GET", artifact, get_artifact, artifact_doc, doc("Download a run artifact", 200, None, run=True)),
    ]


def register(app: APIGatewayHttpResolver, services: Services, connect: ConnectRuns) -> None:
    """Add the compatibility and parity routes to ``app``."""

    def who() -> Principal:
        return common_principal(services.auth, app.current_event.headers)

    # ---- Keboola -----------------------------------------------------------------------------

    @app.post(
        "/v1/projects/<project_id>/actions/<name>/action/<sync_action>",
        tags=["compatibility"],
        summary="Keboola-style sync action call: the action's JSON answer, unwrapped",
        responses=S.responses(200, {}, "the action's own JSON", 400, 404, 409, 429, 504),
    )
    def keboola_action(
        project_id: ProjectId,
        name: str,
        sync_action: str,
        body: Annotated[KeboolaActionBody | None, Body()] = None,
        environment: Environment = None,
    ) -> Response[str]:
        config = (body or KeboolaActionBody()).configData
        extra = {k: v for k, v in config.model_dump(exclude_none=True).items() if k != "parameters"}
        request = RunRequest(parameters=config.parameters, config=extra)
        outcome = services.runs.call_sync(who(), project_id, env_name(environment), name, sync_action, request)
        return json_answer(200, outcome.ret)

    # ---- Pipedream Connect -------------------------------------------------------------------

    @app.post(
        "/v1/connect/<project_id>/actions/run",
        tags=["compatibility"],
        summary="Pipedream Connect: run an action's `run` and wait for {exports, os, ret, stash_id}",
        responses=S.responses(200, CONNECT_RESULT, "the action ran", 400, 404, 409, 429, 504),
    )
    def connect_run(
        project_id: ProjectId,
        body: Annotated[ConnectRunBody, Body()],
        pd_environment: Annotated[
            str | None, Header(alias="x-pd-environment", description="development or production")
        ] = None,
        idempotency_key: Annotated[str | None, Header(alias="idempotency-key", max_length=255)] = None,
    ) -> Response[str]:
        request = RunRequest(
            parameters=body.configured_props or {},
            external_user_id=body.external_user_id,
            stash_id=body.stash_id,
            options={"dynamic_props_id": body.dynamic_props_id} if body.dynamic_props_id else {},
        )
        environment = env_name(pd_environment, "x-pd-environment")
        answer = connect.run(who(), project_id, environment, body.id, body.version, request, idempotency_key)
        return json_answer(200, answer)

    @app.post(
        "/v1/oauth/token",
        tags=["compatibility"],
        summary="OAuth client credentials (Pipedream SDKs): client_id = token id, client_secret = the token",
        responses=S.responses(
            200, S.obj(["access_token", "token_type", "expires_in"], access_token=S.STRING, token_type=S.STRING,
                       expires_in=S.INT), "a bearer token",
        ),
    )  # fmt: skip
    def oauth_token(body: Annotated[OAuthTokenBody, Body()]) -> Response[str]:
        token = services.auth.exchange_client_credentials(body.client_id, body.client_secret or "")
        return json_answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    # ---- files and artifacts (listing; the bytes are raw routes) --------------------------------

    @app.get(
        "/v1/projects/<project_id>/files",
        tags=["files"],
        summary="List project files (inputs runs can name)",
        responses=S.responses(200, S.page(FILE_INFO), "the project's files", 404),
    )
    def list_files(project_id: ProjectId, environment: Environment = None) -> Response[str]:
        stored = services.files.list(who(), project_id, env_name(environment))
        return json_answer(200, page_of([file_body(f) for f in stored], None))

    @app.get(
        "/v1/projects/<project_id>/runs/<run_id>/artifacts",
        tags=["files"],
        summary="List a run's artifacts (files it left in out/files/)",
        responses=S.responses(200, S.page(FILE_INFO), "the run's artifacts", 404),
    )
    def list_artifacts(project_id: ProjectId, run_id: str, environment: Environment = None) -> Response[str]:
        items = services.files.artifacts(who(), project_id, env_name(environment), run_id)
        return json_answer(200, page_of([file_body(f) for f in items], None))

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


def serve_raw(routes: list[RawRoute], event: dict[str, Any], who: Principal | None, path: str) -> dict[str, Any] | None:
    """The answer of a raw route matching the request, or None."""
    method = (event.get("requestContext", {}).get("http", {}).get("method") or "GET").upper()
    allowed = []
    for route in routes:
        match = route.pattern.match(path)
        if match is None:
            continue
        allowed.append(route.method)
        if route.method == method:
            assert who is not None  # noqa: S101 - raw routes are never public
            try:
                return route.handle(event, who, match)
            except HatchwayError as exc:
                return event_answer(*error_answer(exc))
    if allowed:
        body = {"status": "error", "error": "Method not allowed", "code": 405,
                "message": f"{method} is not allowed here; use {', '.join(sorted(allowed))}"}  # fmt: skip
        return event_answer(405, body, {"Allow": ", ".join(sorted(allowed))})
    return None
