"""The HTTP API v1 on powertools' API Gateway HTTP API resolver.

:func:`create_app` binds the routes of ``API.md`` to the use cases (:class:`~hatchway.services.Services`). The
same resolver answers API Gateway events in Lambda (``handlers/api.py``) and, through
``hatchway.server``, plain HTTP on a laptop. Every error, including powertools' own 404 and 422,
leaves in the single error shape of :mod:`hatchway.api.errors`.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from datetime import UTC
from functools import partial
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Query

from hatchway import __version__
from hatchway.api import pipelines as pipeline_routes
from hatchway.api import schemas as S
from hatchway.api.common import (
    JSON,
    PRINCIPAL,
    PROJECT_PATH,
    PUBLIC_PATHS,
    PUBLIC_PREFIXES,
    Cursor,
    Environment,
    Limit,
    ProjectId,
    env_name,
    event_answer,
    header,
    is_json,
    json_answer,
    page_answer,
    page_of,
    too_large,
)
from hatchway.api.common import principal as common_principal
from hatchway.api.errors import dumps, error_answer, unexpected_answer, validation_details
from hatchway.api.fastpath import DirectRoutes
from hatchway.api.models import EncryptRequest, ProjectCreate, RunRequestBody, TokenCreate
from hatchway.api.present import listed_run, run_body, sync_body
from hatchway.api.resolver import ThreadSafeHttpResolver
from hatchway.api.routers import compat
from hatchway.api.routers.compat import raw_routes, serve_raw
from hatchway.api.throttle import FailureBudget
from hatchway.api.validation import CompiledRequestValidation
from hatchway.compat.connect import ConnectRuns
from hatchway.domain.actions import ActionRecord
from hatchway.domain.parameters import json_too_deep
from hatchway.domain.records import DEFAULT_PAGE
from hatchway.domain.runs import LogEntry, RunRequest
from hatchway.domain.spec import ActionSpec
from hatchway.domain.tenants import Principal
from hatchway.errors import (
    Forbidden,
    HatchwayError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    Unauthorized,
    ValidationFailed,
)
from hatchway.services import Services

log = logging.getLogger("hatchway.api")
#: the OAuth client-credentials exchange: public, but its client secret is a token
OAUTH_PATH = "/v1/oauth/token"


class Api:
    """The API: the powertools resolver, behind the checks that come before any validation.

    The body-size limit (413) and authentication (401) are settled before powertools parses and
    validates a request, so an anonymous caller learns nothing from validation errors and a huge
    body is never parsed.
    """

    def __init__(self, services: Services, resolver: APIGatewayHttpResolver, max_body_bytes: int) -> None:
        self.services = services
        self.resolver = resolver
        self.max_body_bytes = max_body_bytes
        self._document: dict[str, Any] | None = None
        self.raw = raw_routes(services.files)
        self._routes: list[tuple[re.Pattern[str], dict[str, set[str]]]] | None = None
        self.direct = DirectRoutes(resolver)
        settings = services.settings
        self.failures = FailureBudget(settings.auth_failure_budget, settings.auth_failure_window_seconds)

    def resolve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """The answer to one API Gateway event; whatever happens, an answer in the API's shapes."""
        try:
            answer = self._resolve(event, context)
        except Exception as exc:  # the last line: no failure leaves outside the error shape
            answer = event_answer(*unexpected_answer(exc))
        return finished(answer, self.services.settings.max_answer_bytes)

    def _authenticate(self, event: dict[str, Any], source: str) -> Principal:
        """The caller; a token from a client over its budget of failed authentications is not even
        looked up. A request without a token guesses nothing: it is a 401 either way."""
        presented = header(event, "authorization")
        if presented:
            self._check_budget(source)
        try:
            return self.services.auth.authenticate(presented)
        except Unauthorized:
            if presented:
                self.failures.spend(source)
            raise

    def _check_budget(self, source: str) -> None:
        wait = self.failures.retry_after(source)
        if wait is not None:
            raise Overloaded(f"too many failed authentications from this address; try again in {wait} s", wait)

    def _resolve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        path = event.get("rawPath") or event.get("path") or "/"
        body = event.get("body") or ""
        size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body)
        try:
            if size > self.max_body_bytes:
                raise PayloadTooLarge(f"the request body is larger than {self.max_body_bytes // (1024 * 1024)} MiB")
            who = None
            source = ((event.get("requestContext") or {}).get("http") or {}).get("sourceIp") or "unknown"
            if path == OAUTH_PATH:
                self._check_budget(source)  # its client secret is a token: the same budget
            if path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES):
                who = self._authenticate(event, source)
                project = PROJECT_PATH.match(path)
                if path.rstrip("/") == "/v1/projects" and not who.is_global_admin:
                    raise Forbidden("only the global admin token creates projects")
                # the environment header is checked on every route, those that do not read it included;
                # a Connect call without one is in development, as its route says
                if project and project.group(1) == "connect":
                    env: str | None = env_name(header(event, "x-pd-environment"), "x-pd-environment")
                else:
                    given = header(event, "x-hatchway-environment")
                    env = env_name(given) if given else None
                if project:
                    # a token of another project (or environment) is refused before anything else is looked at
                    if env is None:
                        self.services.auth.authorize_project(who, project.group(2))
                    else:
                        self.services.auth.authorize(who, project.group(2), env, None)
            unknown = self._unknown_query(event, path)
            if unknown:
                raise ValidationFailed(
                    f"unknown query parameter(s): {', '.join(unknown)}",
                    [
                        {"loc": ["query", name], "msg": "unknown query parameter", "type": "extra_forbidden"}
                        for name in unknown
                    ],
                )
        except HatchwayError as exc:
            return event_answer(*error_answer(exc))
        raw = serve_raw(self.raw, event, who, path)
        if raw is not None:
            return raw
        if event.get("isBase64Encoded") and body:
            try:
                text = base64.b64decode(body).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return event_answer(
                    *error_answer(ValidationFailed.at(["body"], "the body is not UTF-8 JSON", "json_invalid"))
                )
            event = {**event, "body": text, "isBase64Encoded": False}
        depth = self.services.settings.limits.max_json_depth
        if event.get("body") and json_too_deep(event["body"], depth):
            too_deep = ValidationFailed.at(["body"], f"the JSON body nests deeper than {depth} levels", "too_deep")
            return event_answer(*error_answer(too_deep))
        if event.get("body") and has_lone_surrogate(event["body"]):
            problem = "the body escapes half of a UTF-16 surrogate pair (\\ud800-\\udfff), which is no character"
            return event_answer(*error_answer(ValidationFailed.at(["body"], problem, "json_invalid")))
        if body and not is_json(header(event, "content-type")):
            # `curl -d` and friends label JSON as a form or text: read the body as JSON anyway
            headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
            event = {**event, "headers": {**headers, "content-type": JSON}}
        token = PRINCIPAL.set(who)
        try:
            answer = self.direct.answer(event, context) or self.resolver.resolve(event, context)
        finally:
            PRINCIPAL.reset(token)
        if path == OAUTH_PATH and answer.get("statusCode") == 401:
            self.failures.spend(source)
        return answer

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document (built once)."""
        if self._document is None:
            # powertools' OpenAPI models are hundreds of milliseconds of pydantic classes to import;
            # only the document needs them, so a cold start does not pay for them
            from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

            self.resolver.configure_openapi(
                title="hatchway",
                version=__version__,
                summary="A serverless-style action gateway",
                security_schemes={"bearer": HTTPBearer(description="a hatchway token")},
                security=[{"bearer": []}],
            )
            document: dict[str, Any] = json.loads(self.resolver.get_openapi_json_schema())
            for route in self.raw:
                operation = json.loads(json.dumps(route.doc))
                operation["responses"] = {str(k): v for k, v in operation["responses"].items()}
                document["paths"].setdefault(route.doc_path, {})[route.method.lower()] = operation
            for path, operations in document.get("paths", {}).items():
                if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
                    for operation in operations.values():
                        operation["security"] = []
            self._document = document
        return self._document

    def routes(self) -> list[tuple[re.Pattern[str], dict[str, set[str]]]]:
        """Each documented path as a pattern, with its methods and their query parameters."""
        if self._routes is None:
            self._routes = []
            for path, operations in self.openapi().get("paths", {}).items():
                pattern = re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(path)) + "$")
                queries = {
                    method.upper(): {p["name"] for p in op.get("parameters", []) if p.get("in") == "query"}
                    for method, op in operations.items()
                }
                self._routes.append((pattern, queries))
        return self._routes

    def _unknown_query(self, event: dict[str, Any], path: str) -> list[str]:
        """Query parameters the route does not know (a typo such as ?stauts= should not be ignored)."""
        given = set((event.get("queryStringParameters") or {}).keys())
        if not given:
            return []
        method = (event.get("requestContext", {}).get("http", {}).get("method") or "GET").upper()
        for pattern, queries in self.routes():
            if pattern.match(path) and method in queries:
                return sorted(given - queries[method])
        return []


def create_app(services: Services, max_body_bytes: int = 6 * 1024 * 1024) -> Api:
    """The API bound to ``services``."""
    app = ThreadSafeHttpResolver(enable_validation=True)  # hatchway serve resolves from several threads
    app._request_validation_middleware = CompiledRequestValidation()  # same checks, derived once per route
    cached: dict[str, str] = {}
    api = Api(services, app, max_body_bytes)
    settings = services.settings
    page = partial(page_answer, max_bytes=settings.max_answer_bytes)  # every list page stays below it
    connect = ConnectRuns(
        services.runs, services.actions, services.repos.actions, services.idempotency, services.auth, settings
    )
    compat.register(app, services, connect)
    pipeline_routes.register(app, api)
    tenants, actions, runs = services.tenants, services.actions, services.runs

    # ---- plumbing ------------------------------------------------------------------------

    def principal() -> Principal:
        return common_principal(services.auth, app.current_event.headers)

    @app.exception_handler(HatchwayError)
    def _domain_error(exc: HatchwayError) -> Response[str]:
        code, body, headers = error_answer(exc)
        return json_answer(code, body, headers)

    @app.exception_handler(RequestValidationError)
    def _validation_error(exc: RequestValidationError) -> Response[str]:
        details = validation_details(exc.errors())
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"]) or "request"
        code, body, headers = error_answer(ValidationFailed(f"{where}: {first['msg']}", details))
        return json_answer(code, body, headers)

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported(exc: RequestUnsupportedContentType) -> Response[str]:
        body = {"status": "error", "error": "Unsupported media type", "code": 415, "message": "send JSON"}
        return json_answer(415, body)

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response[str]:
        code, body, headers = unexpected_answer(exc)
        return json_answer(code, body, headers)

    @app.not_found
    def _not_found(exc: Exception) -> Response[str]:
        path, method = app.current_event.path, app.current_event.http_method.upper()
        allowed = set().union(*(set(queries) for pattern, queries in api.routes() if pattern.match(path)))
        if allowed and method not in allowed:
            body = {"status": "error", "error": "Method not allowed", "code": 405,
                    "message": f"{method} is not allowed here; use {', '.join(sorted(allowed))}"}  # fmt: skip
            return json_answer(405, body, {"Allow": ", ".join(sorted(allowed))})
        code, answer, headers = error_answer(NotFound("no such route"))
        return json_answer(code, answer, headers)

    # ---- meta ----------------------------------------------------------------------------

    @app.get("/health", tags=["meta"], summary="Liveness", responses=S.responses(200, S.HEALTH, "the gateway is up"))
    def health() -> Response[str]:
        return json_answer(200, {"status": "ok", "version": __version__})

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> Response[str]:
        if "json" not in cached:
            cached["json"] = dumps(api.openapi())
        return Response(200, JSON, cached["json"])

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response[str]:
        if "html" not in cached:
            cached["html"] = _swagger_html(dumps(api.openapi()))
        return Response(200, "text/html; charset=utf-8", cached["html"])

    # ---- projects and tokens ---------------------------------------------------------------

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

    # ---- actions -------------------------------------------------------------------------

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
            input=body.input.model_dump(exclude_none=True) if body.input is not None else None,
            inputs=body.inputs,
            stash_id=body.stash_id,
            cache=body.cache,
            session=body.session.model_dump() if body.session is not None else None,
            callback_url=body.callback_url,
        )

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
        run = runs.submit(principal(), project_id, env_name(environment), name, run_request(body), idempotency_key)
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
        outcome = runs.call_sync(principal(), project_id, env_name(environment), name, sync_action, run_request(body))
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

    # ---- operators: metrics, dashboard numbers, the web console ----------------------------

    from hatchway.api.routers.console import add_console_routes
    from hatchway.api.routers.observe import add_observe_routes

    add_observe_routes(app, services.stats, principal, env_name)
    if settings.is_console_enabled:
        add_console_routes(app)

    return api


#: a JSON escape of a UTF-16 surrogate, with the backslashes before it (an even run is a literal backslash)
_SURROGATE_ESCAPE = re.compile(r"(\\+)u[dD]([89a-fA-F])[0-9a-fA-F]{2}")


def has_lone_surrogate(text: str) -> bool:
    """Whether a JSON text escapes half a surrogate pair: it parses to a string that no encoder
    takes (encryption, files, the store would all fail on it), so it is refused at the door."""
    if "\\u" not in text:
        return False
    expected_low = -1  # where a high surrogate's partner must start
    for match in _SURROGATE_ESCAPE.finditer(text):
        backslashes = len(match.group(1))
        if backslashes % 2 == 0:
            continue  # an escaped backslash followed by the letters "ud8.."
        start = match.end(1) - 1  # the escape's own backslash
        is_low = match.group(2).lower() in "cdef"
        if expected_low >= 0 and start != expected_low:
            return True  # a high surrogate with no low one after it
        if is_low and start != expected_low:
            return True  # a low surrogate with no high one before it
        expected_low = match.end() if not is_low else -1
    return expected_low >= 0


def finished(answer: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """``answer`` as it may leave: a 204 carries no content and so no content type; nothing larger
    than ``max_bytes`` (list pages stay below it by themselves: :func:`page_answer`)."""
    if answer.get("statusCode") == 204:
        headers = {k: v for k, v in (answer.get("headers") or {}).items() if k.lower() != "content-type"}
        return {**answer, "headers": headers, "body": "", "isBase64Encoded": False}
    body = answer.get("body") or ""
    size = len(body) * 3 // 4 if answer.get("isBase64Encoded") else len(body) if body.isascii() else len(body.encode())
    if size > max_bytes:
        return event_answer(*error_answer(too_large(size, max_bytes)))
    return answer


def _swagger_html(spec: str) -> str:
    """Swagger UI with powertools' bundled assets (no CDN), showing ``spec``."""
    from pathlib import Path

    import aws_lambda_powertools.event_handler.openapi.swagger_ui as swagger_ui

    assets = Path(swagger_ui.__file__).parent
    return swagger_ui.generate_swagger_html(
        spec.replace("</", "<\\/"),
        (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (assets / "swagger-ui.min.css").read_text(encoding="utf-8"),
        "",
        None,
    )
