"""The scope of one request: its log correlation and its server span, over ``ports.Telemetry``.

The API does not import the observability adapter: the telemetry the process was built with
(:attr:`hatchway.services.Services.telemetry`) is handed to :func:`hatchway.api.app.create_app`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

    from hatchway.ports import Telemetry

Middleware = Callable[["APIGatewayHttpResolver", Callable[..., "Response[str]"]], "Response[str]"]


@contextmanager
def request_scope(telemetry: Telemetry, event: Any, route: str, project_id: str | None) -> Iterator[Any]:
    """The log correlation and server span of one request to ``route`` (a proxy event); the span
    continues the caller's ``traceparent`` when it sends one."""
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
