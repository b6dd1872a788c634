"""Routes for operators: ``GET /metrics`` (Prometheus text) and the dashboard's numbers.

Both follow the API's conventions: a bearer token, the one error shape, and a place in the
OpenAPI document. ``/metrics`` needs the ``admin`` scope; a project's admin token sees only its
own project's series, the global admin token also the worker gauges (of every process of a
``hatchway serve --processes N`` group, whose counters the page sums; see metrics.GroupRecorder).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, ConfigDict

from hatchway.api import schemas as S
from hatchway.api.common import JSON, SAFE_HEADERS, Environment, ProjectId, caller, env_name, new_router
from hatchway.api.common import json_answer as _json

if TYPE_CHECKING:
    from hatchway.compat import Compat
    from hatchway.ports import Telemetry
    from hatchway.services import Services


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


class ActionErrorRate(_Answer):
    """An action's failed runs among those that ended on their own (SUCCESSFUL or FAILED) in the
    window; TERMINATED runs are not counted. ``error_rate`` is ``failed / finished`` (0 to 1)."""

    action: str
    invoked: str
    finished: int
    failed: int
    error_rate: float


class _Queue(_Answer):
    enqueued: int
    in_progress: int
    terminating: int


class _Workers(_Answer):
    size: int
    busy: int


class Stats(_Answer):
    """Runs per status over time, duration percentiles and error rates per action, the queue and the workers."""

    window: Literal["hour", "day"]
    since: str
    until: str
    bucket_seconds: int
    statuses: list[str]
    buckets: list[_Bucket]
    totals: dict[str, int]
    durations: list[_Duration]
    error_rates: list[ActionErrorRate]
    queue: _Queue
    workers: _Workers | None
    truncated: bool


PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def router(services: Services, compat: Compat, telemetry: Telemetry) -> Router:
    """``/metrics`` and ``/v1/projects/{project_id}/stats``."""
    app = new_router()
    stats_service = services.stats
    principal = caller(services.auth, app)

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
        summary="Dashboard numbers: runs per status over time, p50/p95 and error rate per action, queue, workers",
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

    return app
