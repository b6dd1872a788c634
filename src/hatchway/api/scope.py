"""The scope of one request: its log correlation and its server span, over ``ports.Telemetry``.

The API does not import the observability adapter: the telemetry the process was built with
(:attr:`hatchway.services.Services.telemetry`) is handed to :func:`hatchway.api.app.create_app`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

    from hatchway.ports import Telemetry

#: the access log: one line per request (``HATCHWAY_ACCESS_LOG=off`` silences it)
access_log = logging.getLogger("hatchway.access")
#: the route template of the request being answered, for its access line (set by :func:`request_scope`)
ROUTE: ContextVar[str | None] = ContextVar("hatchway_route", default=None)
#: a run id in the path, or at the head of an answer (a run, a sync result, an error naming its run)
_RUN_IN_PATH = re.compile(r"/runs/(run_[0-9A-Za-z]+)")
_RUN_IN_BODY = re.compile(r'^\{"id":\s*"(run_[0-9A-Za-z]+)"|"(?:run_id|runId)":\s*"(run_[0-9A-Za-z]+)"')

Middleware = Callable[["APIGatewayHttpResolver", Callable[..., "Response[str]"]], "Response[str]"]


@contextmanager
def request_scope(telemetry: Telemetry, event: Any, route: str, project_id: str | None) -> Iterator[Any]:
    """The log correlation and server span of one request to ``route`` (a proxy event); the span
    continues the caller's ``traceparent`` when it sends one."""
    ROUTE.set(route)
    with (
        telemetry.log_context(request_id=event.request_context.request_id, project_id=project_id),
        telemetry.span(f"{event.http_method} {route}", "server", event.headers.get("traceparent"),
                       **{"http.request.method": event.http_method, "http.route": route, "url.path": event.path})
        as current,
    ):  # fmt: skip
        yield current


def request_context(telemetry: Telemetry) -> Middleware:
    """The middleware around every matched route: :func:`request_scope`, and the answer's status on the span."""

    def middleware(app: APIGatewayHttpResolver, next_middleware: Callable[..., Response[str]]) -> Response[str]:
        event = app.current_event
        params = app.request.path_parameters or {}
        with request_scope(telemetry, event, app.request.route, params.get("project_id")) as current:
            response = next_middleware(app)
            if current is not None and hasattr(current, "set_attribute"):
                current.set_attribute("http.response.status_code", response.status_code)
            return response

    return middleware


def log_access(
    method: str, route: str | None, path: str, answer: dict[str, Any], started: float, ended: float,
    request_id: str | None, project_id: str | None, environment: str | None,
) -> None:  # fmt: skip
    """The access line of one request. ``route`` is the template (``/v1/projects/{project_id}/runs``),
    never the path, so no id or file name of a path reaches it unless it is a run id (a correlation key)."""
    status = int(answer.get("statusCode") or 500)
    run = _RUN_IN_PATH.search(path)
    run_id = run.group(1) if run else None
    head = "" if answer.get("isBase64Encoded") else (answer.get("body") or "")[:512]
    if run_id is None and not head.startswith('{"items"'):
        found = _RUN_IN_BODY.search(head)
        run_id = (found.group(1) or found.group(2)) if found else None
    access_log.info(
        "request",
        extra={"method": method, "route": route, "status": status, "duration_ms": round((ended - started) * 1000, 1),
               "request_id": request_id, "project_id": project_id, "environment": environment, "run_id": run_id},
    )  # fmt: skip
