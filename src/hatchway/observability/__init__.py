"""What the gateway tells its operators: logs, metrics, traces and the dashboard's numbers.

* :mod:`~hatchway.observability.logs` - one JSON object per line through powertools' formatter;
  ``run_id``, ``project_id``, ``request_id`` come from a context variable set around each request
  and each attempt, so every line written on their behalf carries them without being passed down.
* :mod:`~hatchway.observability.metrics` - counters and histograms fed by the store's run
  observer (every creation and status change, whoever makes it: API, worker, sweeper, AWS
  events); kept in memory for ``GET /metrics`` (Prometheus text) or emitted as CloudWatch
  embedded metrics (powertools) on AWS.
* :mod:`~hatchway.observability.tracing` - spans for request -> store -> executor -> action
  process over OpenTelemetry (optional import; OTLP export when configured) or X-Ray through
  powertools Tracer; off by default, then every span is a no-op.
* the dashboard's aggregates (runs per status over time, duration percentiles per action, queue
  depth) over the store's lean run summaries are pure functions: :mod:`~hatchway.domain.stats`.

Nothing here may fail a request: observers and exporters swallow their own faults and log them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hatchway.config import Settings


class TracingTelemetry:
    """Spans, trace context and log correlation as :func:`configure_observability` set them up for
    this process (OpenTelemetry, X-Ray, or off: then every span is a no-op)."""

    def __init__(self) -> None:
        from hatchway.observability import logs, tracing

        self._logs = logs
        self._tracing = tracing

    def span(
        self, name: str, kind: str = "internal", parent: str | None = None, **attributes: Any
    ) -> AbstractContextManager[Any]:
        return self._tracing.span(name, kind, parent, **attributes)

    def traceparent(self) -> str | None:
        return self._tracing.current_traceparent()

    def log_context(self, **keys: Any) -> AbstractContextManager[None]:
        return self._logs.log_context(**keys)


def configure_observability(settings: Settings) -> None:
    """Set up logs and tracing for this process, as the settings say (idempotent)."""
    from hatchway.observability.logs import configure_logging
    from hatchway.observability.tracing import configure_tracing

    configure_logging(settings.observability.log_level)
    configure_tracing(settings)


def lambda_handler(
    handle: Callable[[Any, Any], Any], correlation_id_path: str | None = None
) -> Callable[[Any, Any], Any]:
    """``handle`` as a Lambda entry point: powertools ``Logger`` adds the Lambda context (and the
    request id found at ``correlation_id_path``) to every line, and with ``HATCHWAY_TRACING=xray``
    the invocation is an X-Ray segment. Called without a context (tests, scripts), it just handles."""
    from hatchway.observability.logs import powertools_logger
    from hatchway.observability.tracing import traced_handler

    traced = traced_handler(handle)
    with_context = powertools_logger().inject_lambda_context(traced, correlation_id_path=correlation_id_path)

    def handler(event: Any, context: Any) -> Any:
        return traced(event, context) if context is None else with_context(event, context)

    return handler


if TYPE_CHECKING:  # mypy checks that the adapter answers the port
    from hatchway import ports

    def _implements(telemetry: TracingTelemetry) -> ports.Telemetry:
        return telemetry
