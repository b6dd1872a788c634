"""Project files (that runs name as ``inputs``) and the artifacts a run leaves in ``out/files/``.

The lists are powertools routes; the bytes (``PUT/GET/DELETE .../files/{path}``,
``GET .../runs/{id}/artifacts/{path}``) are raw routes (:mod:`hatchway.api.raw`): a file's path
contains ``/`` and its body is bytes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from hatchway.api import schemas as S
from hatchway.api.common import (
    SAFE_HEADERS,
    Environment,
    ProjectId,
    caller,
    env_name,
    event_answer,
    header,
    json_answer,
    new_router,
    page_of,
)
from hatchway.api.present import file_body
from hatchway.api.raw import RawRouter, body_bytes, download_answer

if TYPE_CHECKING:
    from hatchway.compat import Compat
    from hatchway.domain.tenants import Principal
    from hatchway.ports import Telemetry
    from hatchway.services import Services

FILE_INFO = S.obj(
    ["path", "size"], path=S.STRING, size=S.INT, sha256=S.nullable(S.STRING), modified_at=S.nullable(S.TIME)
)


def router(services: Services, compat: Compat, telemetry: Telemetry) -> Router:
    """The file and artifact lists."""
    app = new_router()
    principal = caller(services.auth, app)

    @app.get(
        "/v1/projects/<project_id>/files",
        tags=["files"],
        summary="List project files (inputs runs can name)",
        responses=S.responses(200, S.page(FILE_INFO), "the project's files", 404),
    )
    def list_files(project_id: ProjectId, environment: Environment = None) -> Response[str]:
        stored = services.files.list(principal(), project_id, env_name(environment))
        return json_answer(200, page_of([file_body(f) for f in stored], None))

    @app.get(
        "/v1/projects/<project_id>/runs/<run_id>/artifacts",
        tags=["files"],
        summary="List a run's artifacts (files it left in out/files/)",
        responses=S.responses(200, S.page(FILE_INFO), "the run's artifacts", 404),
    )
    def list_artifacts(project_id: ProjectId, run_id: str, environment: Environment = None) -> Response[str]:
        items = services.files.artifacts(principal(), project_id, env_name(environment), run_id)
        return json_answer(200, page_of([file_body(f) for f in items], None))

    return app


def raw_router(services: Services, compat: Compat, telemetry: Telemetry) -> RawRouter:
    """The byte-level routes: project files and run artifacts."""
    raw = RawRouter()
    file_service = services.files
    files = re.compile(r"^/v1/projects/(?P<project>proj_[A-Za-z0-9]+)/files/(?P<path>.+)$")
    artifact = re.compile(
        r"^/v1/projects/(?P<project>proj_[A-Za-z0-9]+)/runs/(?P<run>run_[0-9A-Z]+)/artifacts/(?P<path>.+)$"
    )
    file_doc = "/v1/projects/{project_id}/files/{path}"
    artifact_doc = "/v1/projects/{project_id}/runs/{run_id}/artifacts/{path}"
    max_answer = services.settings.server.max_answer_bytes

    def env(event: dict[str, Any]) -> str:
        return env_name(header(event, "x-hatchway-environment"))

    @raw.route("PUT", files, file_doc, _doc("Upload a project file", 201, FILE_INFO, upload=True))
    def put_file(event: dict[str, Any], who: Principal, m: re.Match[str]) -> dict[str, Any]:
        stored = file_service.put(who, m["project"], env(event), m["path"], body_bytes(event))
        return event_answer(201, file_body(stored), {})

    @raw.route("GET", files, file_doc, _doc("Download a project file", 200, None))
    def get_file(event: dict[str, Any], who: Principal, m: re.Match[str]) -> dict[str, Any]:
        download = file_service.get(who, m["project"], env(event), m["path"])
        return download_answer(download, m["path"], max_answer, event)

    @raw.route("DELETE", files, file_doc, _doc("Delete a project file", 204, None))
    def delete_file(event: dict[str, Any], who: Principal, m: re.Match[str]) -> dict[str, Any]:
        file_service.delete(who, m["project"], env(event), m["path"])
        return {"statusCode": 204, "headers": dict(SAFE_HEADERS), "body": "", "isBase64Encoded": False}

    @raw.route("GET", artifact, artifact_doc, _doc("Download a run artifact", 200, None, run=True))
    def get_artifact(event: dict[str, Any], who: Principal, m: re.Match[str]) -> dict[str, Any]:
        download = file_service.artifact(who, m["project"], env(event), m["run"], m["path"])
        return download_answer(download, m["path"], max_answer, event)

    return raw


_PROJECT_SCHEMA = {"type": "string", "pattern": "^proj_[a-zA-Z0-9]+$"}
_PATH_PARAMS = [
    {"name": "project_id", "in": "path", "required": True, "schema": _PROJECT_SCHEMA},
    {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}, "description": "a/b.csv"},
    {"name": "x-hatchway-environment", "in": "header", "required": False, "schema": {"type": "string"}},
]
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _doc(
    summary: str, ok: int, schema: dict[str, Any] | None, *, upload: bool = False, run: bool = False
) -> dict[str, Any]:
    """The OpenAPI operation of a raw file route."""
    operation: dict[str, Any] = {
        "tags": ["files"],
        "summary": summary,
        "parameters": _PATH_PARAMS[:1]
        + ([{"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}] if run else [])
        + _PATH_PARAMS[1:],
        "responses": dict(S.responses(ok, schema, summary, 404)),
    }
    if upload:
        operation["requestBody"] = {"required": False, "content": _BINARY}  # an empty file is a file
    if ok == 200 and schema is None:
        operation["responses"][200] = {"description": summary, "content": _BINARY}
    return operation
