"""The HTTP API v1 on powertools' API Gateway HTTP API resolver.

:func:`create_app` includes the routers of :mod:`hatchway.api.routers` (one per resource, each bound
to the use cases of :class:`~hatchway.services.Services`) in the order a request is matched. The
same resolver answers API Gateway events in Lambda (``handlers/api.py``) and, through
``hatchway.server``, plain HTTP on a laptop. Every error, including powertools' own 404 and 422,
leaves in the single error shape of :mod:`hatchway.api.errors`.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import re
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)

from hatchway import __version__
from hatchway.api.common import (
    ENCODING_GROWS_FROM,
    JSON,
    PRINCIPAL,
    PROJECT_PATH,
    PUBLIC_PATHS,
    PUBLIC_PREFIXES,
    env_name,
    event_answer,
    header,
    is_json,
    json_answer,
    too_large,
)
from hatchway.api.cors import Cors
from hatchway.api.errors import dumps, error_answer, unexpected_answer, validation_details
from hatchway.api.fastpath import DirectRoutes
from hatchway.api.groups import LazyGroup, RouteGroups
from hatchway.api.models import ENVIRONMENT_PATTERN
from hatchway.api.raw import RawRoute, RawRouter, serve_raw
from hatchway.api.resolver import ThreadSafeHttpResolver
from hatchway.api.routers import actions, files, meta, runs
from hatchway.api.scope import ROUTE, log_access, request_context
from hatchway.api.throttle import FailureBudget
from hatchway.api.validation import CompiledRequestValidation
from hatchway.compat import Compat
from hatchway.domain.parameters import json_too_deep
from hatchway.domain.tenants import DEFAULT_ENVIRONMENT, Principal
from hatchway.errors import (
    Forbidden,
    HatchwayError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    Unauthorized,
    ValidationFailed,
)
from hatchway.runtime.contract import LAMBDA_RESPONSE_BYTES, encoded_size, leave_out

if TYPE_CHECKING:
    from hatchway.config import Settings
    from hatchway.ports import Telemetry
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

    def __init__(
        self,
        services: Services,
        resolver: APIGatewayHttpResolver,
        settings: Settings,
        telemetry: Telemetry,
        fastpath: bool = True,
    ) -> None:
        self.services = services
        self.resolver = resolver
        self.settings = settings
        self.max_body_bytes = settings.server.max_body_bytes
        self._document: dict[str, Any] | None = None
        #: the raw routes, answered before the resolver in this order (:meth:`include_raw`)
        self.raw: list[RawRoute] = []
        self._routes: list[tuple[re.Pattern[str], dict[str, set[str]]]] | None = None
        self.direct = DirectRoutes(resolver, telemetry, fastpath)
        #: the resolver's routes, some included on first use (:func:`create_app`'s ``lazy``)
        self.groups = RouteGroups(resolver)
        self.is_access_logged = settings.server.is_access_log_enabled
        self.cors = Cors(settings.server.cors_origins)
        self.failures = FailureBudget(settings.server.auth_failure_budget, settings.server.auth_failure_window_seconds)

    def include(self, router: Router) -> None:
        """Add ``router``'s routes after those already included (the first match wins)."""
        self.groups.include(router)

    def include_later(self, group: LazyGroup) -> None:
        """Declare ``group``'s routes here in the matching order; they are added with the first
        request under its paths, or when anything lists the routes (:mod:`hatchway.api.groups`)."""
        self.groups.defer(group)

    def include_raw(self, router: RawRouter) -> None:
        """Add ``router``'s raw routes after those already included."""
        self.raw.extend(router)

    def resolve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """The answer to one API Gateway event; whatever happens, an answer in the API's shapes."""
        started = time.perf_counter()
        route = ROUTE.set(None)
        try:
            method = ((event.get("requestContext") or {}).get("http") or {}).get("method") or ""
            preflight = self.cors.preflight(event, method.upper())
            try:
                answer = preflight or self._resolve(event, context)
            except Exception as exc:  # the last line: no failure leaves outside the error shape
                answer = event_answer(*unexpected_answer(exc))
            answer = self.cors.decorate(event, finished(answer, self.settings.server.max_answer_bytes))
            if self.is_access_logged:
                self._log_access(event, answer, started)
            return answer
        finally:
            ROUTE.reset(route)

    def _log_access(self, event: dict[str, Any], answer: dict[str, Any], started: float) -> None:
        path = event.get("rawPath") or event.get("path") or "/"
        context = event.get("requestContext") or {}
        method = ((context.get("http") or {}).get("method") or event.get("httpMethod") or "GET").upper()
        project = PROJECT_PATH.match(path)
        given = header(event, "x-hatchway-environment")
        # the environment the request named (an invalid name was refused, and is not echoed)
        environment = None
        if project:
            environment = DEFAULT_ENVIRONMENT if not given else given if re.match(ENVIRONMENT_PATTERN, given) else None
        log_access(
            method, ROUTE.get(), path, answer, started, time.perf_counter(), context.get("requestId"),
            project.group(2) if project else None, environment,
        )  # fmt: skip

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
        method = (((event.get("requestContext") or {}).get("http") or {}).get("method") or "GET").upper()
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
                if path.rstrip("/") == "/v1/projects" and method == "POST" and not who.is_global_admin:
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
        depth = self.settings.limits.max_json_depth
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
        self.groups.ready_for(path)
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
            self.groups.include_all()
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
            from hatchway.api.openapi import refine

            raw = {(route.doc_path, route.method.lower()): route.handle.__name__ for route in self.raw}
            self._document = refine(document, raw)
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


#: the routers in the order a request is matched (tests/functional/test_api_snapshot.py freezes it), with
#: the paths of those a lazy app includes on first use (``*`` is one segment, ``$`` ends an exact path;
#: see hatchway.api.groups): what few requests ask for - the other platforms' dialects, cache tags and
#: sessions, pipelines, projects and their tokens, statistics and metrics, the console
ROUTERS: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("compat", ("/v1/projects/*/actions/*/action", "/v1/ductape", "/v1/connect", "/v1/oauth/token")),
    ("files", None),
    ("extras", ("/v1/projects/*/caches", "/v1/projects/*/sessions", "/v1/projects/*/callbacks")),
    ("pipelines", ("/v1/projects/*/pipelines",)),
    ("meta", None),
    ("projects", ("/v1/projects$", "/v1/projects/*$", "/v1/projects/*/tokens", "/v1/projects/*/encrypt")),
    ("actions", None),
    ("runs", None),
    ("observe", ("/metrics", "/v1/projects/*/stats")),
    ("console", ("/", "/ui")),
)


def create_app(
    services: Services,
    compat: Compat | None = None,
    telemetry: Telemetry | None = None,
    settings: Settings | None = None,
    *,
    fastpath: bool = True,
    lazy: bool = False,
) -> Api:
    """The API bound to ``services``: the dialects of ``compat`` (default: built over ``services``),
    requests in the scope of ``telemetry`` (default: the services'), limits of ``settings`` (default:
    the services'). ``fastpath=False`` answers every request through powertools (:mod:`hatchway.api.fastpath`);
    ``lazy=True`` includes the rarely used routers on first use (:data:`ROUTERS`; the Lambda's cold start)."""
    compat = compat or Compat.of(services)
    telemetry = telemetry or services.telemetry
    settings = settings or services.settings
    resolver = ThreadSafeHttpResolver(enable_validation=True)  # hatchway serve resolves from several threads
    resolver._request_validation_middleware = CompiledRequestValidation()  # same checks, derived once per route
    api = Api(services, resolver, settings, telemetry, fastpath)
    _handle_errors(api)
    api.include_raw(files.raw_router(services, compat, telemetry))
    eager = {"files": files, "meta": meta, "actions": actions, "runs": runs}

    def build(name: str) -> Router:
        module = eager.get(name) or _lazy_router_module(name)
        if name == "meta":
            return meta.router(services, compat, telemetry, api.openapi)
        router: Router = module.router(services, compat, telemetry)
        return router

    for name, paths in ROUTERS:
        if name == "console" and not settings.server.is_console_enabled:
            continue
        if lazy and paths is not None:
            api.include_later(LazyGroup(name, paths, partial(build, name)))
        else:
            api.include(build(name))
    resolver.use([request_context(telemetry)])  # log correlation and a server span around every route
    return api


def _lazy_router_module(name: str) -> Any:
    """The module of a router :data:`ROUTERS` may include on first use (imported only then)."""
    if not any(name == lazy and paths is not None for lazy, paths in ROUTERS):
        raise ValueError(f"no router called {name!r}")
    return importlib.import_module(f"hatchway.api.routers.{name}")


def _handle_errors(api: Api) -> None:
    """Every error in the API's one shape: its own errors, powertools' validation, 404 and 405, the unexpected."""
    app = api.resolver

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
    if "stream" in answer:  # a large download the embedded server streams (api.raw.download_answer)
        return answer
    if answer.get("statusCode") == 204:
        headers = {k: v for k, v in (answer.get("headers") or {}).items() if k.lower() != "content-type"}
        return {**answer, "headers": headers, "body": "", "isBase64Encoded": False}
    body = answer.get("body") or ""
    size = len(body) * 3 // 4 if answer.get("isBase64Encoded") else len(body) if body.isascii() else len(body.encode())
    if size > max_bytes:
        return event_answer(*error_answer(too_large(size, max_bytes)))
    if len(body) > ENCODING_GROWS_FROM:
        return fit_lambda_response(answer)
    return answer


def fit_lambda_response(answer: dict[str, Any]) -> dict[str, Any]:
    """``answer`` within Lambda's response limit as the API function's runtime encodes it (the body
    a JSON string in the answer, escaped; on every backend alike): a run's or sync call's log lines
    (``os``) are left out first, marked with a ``log truncated:`` entry - the whole log stays under
    ``/logs``; an answer that still does not fit is a 500 (its sizes logged), never a function error."""
    size = encoded_size(answer)
    if size <= LAMBDA_RESPONSE_BYTES:
        return answer
    kind = next((v for k, v in (answer.get("headers") or {}).items() if k.lower() == "content-type"), None)
    document = json.loads(answer["body"]) if is_json(kind) else None
    entries = document.get("os") if isinstance(document, dict) else None
    if isinstance(document, dict) and isinstance(entries, list) and entries:

        def size_of(index: int) -> int:
            return encoded_size(dumps(entries[index])) - 1  # in the body, and its comma

        cut = leave_out(len(entries), size - LAMBDA_RESPONSE_BYTES + MARKER_ROOM, size_of)
        first = entries[min(cut)]
        marker = {
            "seq": first.get("seq", 0), "k": "system", "ts": first.get("ts", 0),
            "msg": f"log truncated: {len(cut)} lines ({sum(len(str(entries[i].get('msg')).encode()) + 1 for i in cut)}"
            f" bytes) left out of this answer to fit Lambda's {LAMBDA_RESPONSE_BYTES}-byte response; the run's "
            "/logs has them all",
        }  # fmt: skip
        kept = [entry for index, entry in enumerate(entries) if index not in cut]
        at = min(cut)  # where the lines left out began (nothing before it was left out)
        document["os"] = [*kept[:at], marker, *kept[at:]]
        answer = {**answer, "body": dumps(document)}
        size = encoded_size(answer)
        if size <= LAMBDA_RESPONSE_BYTES:
            return answer
    return event_answer(*error_answer(too_large(size, LAMBDA_RESPONSE_BYTES, limit="Lambda's response limit")))


#: what the ``log truncated`` entry of a shortened answer may take
MARKER_ROOM = 512
