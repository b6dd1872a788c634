"""The HTTP API v1 on powertools' API Gateway HTTP API resolver.

:func:`create_app` binds the routes of ``API.md`` to a :class:`~hatchway.service.Gateway`. The
same resolver answers API Gateway events in Lambda (``handlers/api.py``) and, through
``hatchway.server``, plain HTTP on a laptop. Every error, including powertools' own 404 and 422,
leaves in the single error shape of :mod:`hatchway.api.errors`.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query

from hatchway import __version__
from hatchway.api.errors import dumps, error_answer, unexpected_answer, validation_details
from hatchway.api.models import ENVIRONMENT_PATTERN, EncryptRequest, ProjectCreate, RunRequestBody, TokenCreate
from hatchway.errors import HatchwayError, NotFound, PayloadTooLarge, ValidationFailed
from hatchway.service import DEFAULT_ENVIRONMENT, Gateway, Principal, RunRequest
from hatchway.spec import ActionSpec
from hatchway.store.base import DEFAULT_PAGE, MAX_PAGE

log = logging.getLogger("hatchway.api")

JSON = "application/json"
ProjectId = Annotated[str, Path(pattern=r"^proj_[a-zA-Z0-9]+$", description="project id")]
Environment = Annotated[
    str | None,
    Header(alias="x-hatchway-environment", description="environment inside the project (default development)"),
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")]
Cursor = Annotated[str | None, Query(description="cursor from the previous page's next")]

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["status", "error", "code", "message"],
    "properties": {
        "status": {"type": "string", "enum": ["error"]},
        "error": {"type": "string"},
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "exceptionId": {"type": "string"},
        "runId": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object"}},
    },
}


def _errors(*codes: int) -> dict[int, Any]:
    described = {
        400: "User error",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not found",
        409: "Conflict",
        413: "Payload too large",
        422: "Validation error",
        429: "Too many requests",
        500: "Application error",
        503: "Service unavailable",
        504: "Timeout",
    }
    return {
        code: {"description": described[code], "content": {JSON: {"schema": _ERROR_SCHEMA}}}
        for code in (401, 403, 422, 500, 503, *codes)
    }


def _json(code: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(status_code=code, content_type=JSON, body=dumps(body), headers=headers or {})


def _page(items: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {"items": items, "next": next_cursor}


def create_app(gateway: Gateway, max_body_bytes: int = 6 * 1024 * 1024) -> APIGatewayHttpResolver:
    """The API's resolver, bound to ``gateway``."""
    app = APIGatewayHttpResolver(enable_validation=True)
    app.configure_openapi(
        title="hatchway",
        version=__version__,
        summary="A serverless-style action gateway",
        security_schemes={"bearer": HTTPBearer(description="a hatchway token")},
        security=[{"bearer": []}],
    )
    app.enable_swagger(path="/docs", title="hatchway", version=__version__)
    openapi_json: list[str] = []

    # ---- plumbing ------------------------------------------------------------------------

    def principal() -> Principal:
        return gateway.authenticate(app.current_event.headers.get("authorization"))

    def env_name(value: str | None) -> str:
        if value is None or value == "":
            return DEFAULT_ENVIRONMENT
        if not re.match(ENVIRONMENT_PATTERN, value):
            raise ValidationFailed.at(
                ["header", "X-Hatchway-Environment"],
                "an environment name is lowercase letters, digits, '_' and '-', at most 63 characters",
            )
        return value

    def body_limit(app: APIGatewayHttpResolver, next_middleware: Any) -> Any:
        body = app.current_event.body
        if body is not None and len(body) > max_body_bytes:
            raise PayloadTooLarge(f"the request body is larger than {max_body_bytes // (1024 * 1024)} MiB")
        return next_middleware(app)

    app.use([body_limit])

    @app.exception_handler(HatchwayError)
    def _domain_error(exc: HatchwayError) -> Response[str]:
        code, body, headers = error_answer(exc)
        return _json(code, body, headers)

    @app.exception_handler(RequestValidationError)
    def _validation_error(exc: RequestValidationError) -> Response[str]:
        details = validation_details(exc.errors())
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"]) or "request"
        code, body, headers = error_answer(ValidationFailed(f"{where}: {first['msg']}", details))
        return _json(code, body, headers)

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response[str]:
        code, body, headers = unexpected_answer(exc)
        return _json(code, body, headers)

    @app.not_found
    def _not_found(exc: Exception) -> Response[str]:
        code, body, headers = error_answer(NotFound("no such route"))
        return _json(code, body, headers)

    # ---- meta ----------------------------------------------------------------------------

    @app.get("/health", security=[], tags=["meta"], summary="Liveness")
    def health() -> Response[str]:
        return _json(200, {"status": "ok", "version": __version__})

    @app.get("/openapi.json", security=[], include_in_schema=False)
    def openapi() -> Response[str]:
        if not openapi_json:
            openapi_json.append(app.get_openapi_json_schema())
        return Response(200, JSON, openapi_json[0])

    # ---- projects and tokens ---------------------------------------------------------------

    @app.post("/v1/projects", tags=["projects"], summary="Create a project", responses=_errors(409))
    def create_project(body: Annotated[ProjectCreate, Body()]) -> Response[str]:
        project = gateway.create_project(principal(), body.name, body.id)
        return _json(201, project.to_api())

    @app.get("/v1/projects/<project_id>", tags=["projects"], summary="Get a project", responses=_errors(404))
    def get_project(project_id: ProjectId) -> Response[str]:
        return _json(200, gateway.get_project(principal(), project_id).to_api())

    @app.post("/v1/projects/<project_id>/tokens", tags=["tokens"], summary="Create a token", responses=_errors(404))
    def create_token(project_id: ProjectId, body: Annotated[TokenCreate, Body()]) -> Response[str]:
        expires_at = None
        if body.expires_at is not None:
            moment = body.expires_at if body.expires_at.tzinfo else body.expires_at.replace(tzinfo=UTC)
            expires_at = int(moment.timestamp() * 1000)
        elif body.expires_in_seconds is not None:
            expires_at = int(time.time() * 1000) + body.expires_in_seconds * 1000
        record, token = gateway.create_token(
            principal(), project_id, body.scopes, body.environments, expires_at, body.name
        )
        return _json(201, {"token": token, **record.to_api()})

    @app.get("/v1/projects/<project_id>/tokens", tags=["tokens"], summary="List tokens", responses=_errors(404))
    def list_tokens(project_id: ProjectId) -> Response[str]:
        tokens = gateway.list_tokens(principal(), project_id)
        return _json(200, _page([t.to_api() for t in tokens], None))

    @app.delete(
        "/v1/projects/<project_id>/tokens/<token_id>", tags=["tokens"], summary="Revoke a token", responses=_errors(404)
    )
    def revoke_token(project_id: ProjectId, token_id: str) -> Response[str]:
        gateway.revoke_token(principal(), project_id, token_id)
        return Response(204, JSON, "")

    # ---- secrets -------------------------------------------------------------------------

    @app.post(
        "/v1/projects/<project_id>/encrypt", tags=["secrets"], summary="Encrypt secret values", responses=_errors(404)
    )
    def encrypt(
        project_id: ProjectId, body: Annotated[EncryptRequest, Body()], environment: Environment = None
    ) -> Response[str]:
        who, env = principal(), env_name(environment)
        if body.value is not None:
            return _json(200, {"ciphertext": gateway.encrypt(who, project_id, env, body.value, body.action)})
        values = {k: gateway.encrypt(who, project_id, env, v, body.action) for k, v in (body.values or {}).items()}
        return _json(200, {"values": values})

    # ---- actions -------------------------------------------------------------------------

    @app.post(
        "/v1/projects/<project_id>/actions",
        tags=["actions"],
        summary="Register an action version from its action.json",
        responses={200: {"description": "identical to the latest version; nothing changed"}, **_errors(404, 413)},
        status_code=201,
    )
    def register_action(
        project_id: ProjectId, body: Annotated[ActionSpec, Body()], environment: Environment = None
    ) -> Response[str]:
        record, created = gateway.register_action(principal(), project_id, env_name(environment), body)
        return _json(201 if created else 200, record.to_api())

    @app.get("/v1/projects/<project_id>/actions", tags=["actions"], summary="List actions", responses=_errors())
    def list_actions(
        project_id: ProjectId,
        environment: Environment = None,
        tag: Annotated[str | None, Query()] = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> Response[str]:
        page = gateway.list_actions(principal(), project_id, env_name(environment), limit, cursor, tag)
        return _json(200, _page([r.to_api() for r in page.items], page.next))

    @app.get(
        "/v1/projects/<project_id>/actions/<name>",
        tags=["actions"],
        summary="Get an action (latest, or a version or digest)",
        responses=_errors(404),
    )
    def get_action(
        project_id: ProjectId,
        name: str,
        environment: Environment = None,
        version: Annotated[int | None, Query(ge=1)] = None,
        digest: Annotated[str | None, Query(pattern=r"^sha256:[0-9a-f]{64}$")] = None,
    ) -> Response[str]:
        record = gateway.get_action(principal(), project_id, env_name(environment), name, version, digest)
        return _json(200, record.to_api())

    @app.get(
        "/v1/projects/<project_id>/actions/<name>/versions",
        tags=["actions"],
        summary="List an action's versions",
        responses=_errors(404),
    )
    def list_versions(
        project_id: ProjectId,
        name: str,
        environment: Environment = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> Response[str]:
        page = gateway.list_versions(principal(), project_id, env_name(environment), name, limit, cursor)
        return _json(200, _page([r.to_api() for r in page.items], page.next))

    @app.delete(
        "/v1/projects/<project_id>/actions/<name>", tags=["actions"], summary="Delete an action", responses=_errors(404)
    )
    def delete_action(project_id: ProjectId, name: str, environment: Environment = None) -> Response[str]:
        gateway.delete_action(principal(), project_id, env_name(environment), name)
        return Response(204, JSON, "")

    # ---- runs ----------------------------------------------------------------------------

    def run_request(body: RunRequestBody | None) -> RunRequest:
        body = body or RunRequestBody()
        return RunRequest(
            parameters=body.parameters,
            version=body.version,
            digest=body.digest,
            timeout_seconds=body.timeout_seconds,
            retries=body.retries,
            external_user_id=body.external_user_id,
        )

    @app.post(
        "/v1/projects/<project_id>/actions/<name>/runs",
        tags=["runs"],
        summary="Start an async run",
        responses=_errors(400, 404, 409, 413),
        status_code=202,
    )
    def submit_run(
        project_id: ProjectId,
        name: str,
        body: Annotated[RunRequestBody | None, Body()] = None,
        environment: Environment = None,
        idempotency_key: Annotated[str | None, Header(alias="idempotency-key", max_length=255)] = None,
    ) -> Response[str]:
        answer, code = gateway.submit_run(
            principal(), project_id, env_name(environment), name, run_request(body), idempotency_key
        )
        return _json(code, answer, {"Location": f"/v1/projects/{project_id}/runs/{answer['id']}"})

    @app.post(
        "/v1/projects/<project_id>/actions/<name>/sync/<sync_action>",
        tags=["runs"],
        summary="Call a sync action and wait for its JSON answer",
        responses=_errors(400, 404, 409, 413, 429, 504),
    )
    def call_sync(
        project_id: ProjectId,
        name: str,
        sync_action: str,
        body: Annotated[RunRequestBody | None, Body()] = None,
        environment: Environment = None,
    ) -> Response[str]:
        result = gateway.call_sync(principal(), project_id, env_name(environment), name, sync_action, run_request(body))
        return _json(200, result)

    @app.get("/v1/projects/<project_id>/runs", tags=["runs"], summary="List runs, newest first", responses=_errors())
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
        page = gateway.list_runs(principal(), project_id, env_name(environment), limit, cursor, filters)
        return _json(200, _page([gateway.present_run(r) for r in page.items], page.next))

    @app.get("/v1/projects/<project_id>/runs/<run_id>", tags=["runs"], summary="Get a run", responses=_errors(404))
    def get_run(project_id: ProjectId, run_id: str, environment: Environment = None) -> Response[str]:
        run = gateway.get_run(principal(), project_id, env_name(environment), run_id)
        return _json(200, gateway.present_run(run))

    @app.get(
        "/v1/projects/<project_id>/runs/<run_id>/logs",
        tags=["runs"],
        summary="Read a run's log",
        responses=_errors(404),
    )
    def read_logs(
        project_id: ProjectId,
        run_id: str,
        environment: Environment = None,
        after: Annotated[int, Query(ge=0, description="return entries with seq above this")] = 0,
        limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    ) -> Response[str]:
        page = gateway.read_logs(principal(), project_id, env_name(environment), run_id, after, limit)
        return _json(200, _page([e.to_api() for e in page.items], page.next))

    @app.post(
        "/v1/projects/<project_id>/runs/<run_id>/cancel",
        tags=["runs"],
        summary="Cancel a run",
        responses=_errors(404, 409),
        status_code=202,
    )
    def cancel_run(project_id: ProjectId, run_id: str, environment: Environment = None) -> Response[str]:
        run = gateway.cancel_run(principal(), project_id, env_name(environment), run_id)
        return _json(202, gateway.present_run(run))

    return app
