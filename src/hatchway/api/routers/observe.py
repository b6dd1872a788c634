"""Routes for operators: ``GET /metrics`` (Prometheus text) and the dashboard's numbers.

Both follow the API's conventions: a bearer token, the one error shape, and a place in the
OpenAPI document. ``/metrics`` needs the ``admin`` scope; a project's admin token sees only its
own project's series, the global admin token also the process-wide worker gauges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, ConfigDict

from hatchway.api import schemas as S
from hatchway.api.common import JSON, SAFE_HEADERS, Environment, ProjectId
from hatchway.api.common import json_answer as _json
from hatchway.domain.tenants import Principal
from hatchway.observability.logs import log_context
from hatchway.observability.tracing import span
from hatchway.services.stats import StatsService

PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


class _Answer(BaseModel):
    # built on first use: most processes never describe or validate the statistics answer
    model_config = ConfigDict(defer_build=True)


class _Bucket(_Answer):
    start: str
    counts: dict[str, int]


class _Duration(_Answer):
    action: str
    invoked: str
    count: int
    failed: int
    p50_ms: int | None
    p95_ms: int | None
    max_ms: int


class _Queue(_Answer):
    enqueued: int
    in_progress: int
    terminating: int


class _Workers(_Answer):
    size: int
    busy: int


class Stats(_Answer):
    """Runs per status over time, duration percentiles per action, the queue and the workers."""

    window: Literal["hour", "day"]
    since: str
    until: str
    bucket_seconds: int
    statuses: list[str]
    buckets: list[_Bucket]
    totals: dict[str, int]
    durations: list[_Duration]
    queue: _Queue
    workers: _Workers | None
    truncated: bool


def request_context(app: APIGatewayHttpResolver, next_middleware: Callable[..., Response[str]]) -> Response[str]:
    """Around every matched route: the request's log correlation, and a server span that
    continues the caller's ``traceparent`` when it sends one."""
    event = app.current_event
    params = app.request.path_parameters or {}
    with request_scope(event, app.request.route, params.get("project_id")) as current:
        response = next_middleware(app)
        if current is not None and hasattr(current, "set_attribute"):
            current.set_attribute("http.response.status_code", response.status_code)
        return response


@contextmanager
def request_scope(event: Any, route: str, project_id: str | None) -> Iterator[Any]:
    """The log correlation and server span of one request to ``route`` (a proxy event)."""
    with (
        log_context(request_id=event.request_context.request_id, project_id=project_id),
        span(f"{event.http_method} {route}", "server", event.headers.get("traceparent"),
             **{"http.request.method": event.http_method, "http.route": route, "url.path": event.path}) as current,
    ):  # fmt: skip
        yield current


def add_observe_routes(
    app: APIGatewayHttpResolver,
    stats_service: StatsService,
    principal: Callable[[], Principal],
    env_name: Callable[[str | None], str],
) -> None:
    """Bind ``/metrics`` and ``/v1/projects/{project_id}/stats``; correlate requests."""
    app.use([request_context])

    @app.get(
        "/metrics",
        tags=["observability"],
        summary="Metrics in the Prometheus text format (admin scope)",
        responses={
            **S.responses(200, None, "the metrics"),
            200: {
                "description": "Prometheus text exposition format 0.0.4",
                "content": {PROMETHEUS: {"schema": {"type": "string"}}},
            },
        },
    )
    def metrics() -> Response[str]:
        return Response(200, PROMETHEUS, stats_service.metrics_text(principal()), headers=SAFE_HEADERS)

    @app.get(
        "/v1/projects/<project_id>/stats",
        tags=["observability"],
        summary="Dashboard numbers: runs per status over time, p50/p95 durations, queue depth, workers",
        responses={
            **S.responses(200, None, "the numbers", 404),
            200: {"description": "the numbers", "content": {JSON: {"model": Stats}}},
        },
    )
    def stats(
        project_id: ProjectId,
        environment: Environment = None,
        window: Annotated[Literal["hour", "day"], Query(description="the last hour or the last day")] = "hour",
    ) -> Response[str]:
        return _json(200, stats_service.dashboard(principal(), project_id, env_name(environment), window))
