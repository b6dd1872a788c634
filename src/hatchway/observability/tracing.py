"""Tracing: API request -> store -> executor -> action process, over OpenTelemetry or X-Ray.

Off by default, and then :func:`span` is a shared no-op context manager: nothing is imported and
nothing is allocated, so cold starts and hot paths pay nothing. ``HATCHWAY_TRACING=otlp`` imports
the OpenTelemetry SDK (``pip install 'hatchway[otel]'``) and exports over OTLP/HTTP in batches;
``HATCHWAY_TRACING=xray`` opens X-Ray subsegments through powertools' Tracer (on Lambda). Tests
pass an exporter (the SDK's in-memory one) to :func:`configure_tracing`.

The trace context crosses process boundaries as a W3C ``traceparent``: read from an incoming
request, kept on an async run (so the worker's attempt continues the submitting request's trace),
and handed to the action as ``TRACEPARENT`` in its environment, so an action that traces itself
continues the same trace. A private tracer provider is used (never the global one), so
reconfiguring in tests is safe and an application embedding hatchway keeps its own.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hatchway.config import Settings
    from hatchway.ports import Repos

log = logging.getLogger("hatchway.tracing")

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
#: the store operations that get a span (only inside a trace: idle worker polls make none)
TRACED_STORE_METHODS = (
    "get_project", "get_token", "create_run", "get_run", "list_runs", "transition", "update_run", "claim",
    "register_version", "get_action", "list_actions", "list_versions", "append_logs", "read_logs",
    "idempotency_begin", "idempotency_complete", "run_summaries", "active_counts",
)  # fmt: skip


class _Off:
    """No tracing: every span is the same no-op."""

    name = "off"
    _noop = contextlib.nullcontext(None)

    def span(self, name: str, kind: str, parent: str | None, attributes: dict[str, Any]) -> AbstractContextManager[Any]:
        return self._noop

    def traceparent(self) -> str | None:
        return None

    def is_recording(self) -> bool:
        return False

    def shutdown(self) -> None:
        pass


class _OpenTelemetry(_Off):
    """Spans of the OpenTelemetry SDK, exported by ``exporter`` or over OTLP/HTTP."""

    name = "otlp"

    def __init__(self, exporter: Any = None, endpoint: str | None = None) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from hatchway import __version__

        self._trace = trace
        self._propagator = TraceContextTextMapPropagator()
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": "hatchway", "service.version": __version__})
        )
        if exporter is not None:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            base = (endpoint or "http://localhost:4318").rstrip("/")
            self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
        self.tracer = self.provider.get_tracer("hatchway", __version__)
        self._kinds = {
            "internal": trace.SpanKind.INTERNAL,
            "server": trace.SpanKind.SERVER,
            "client": trace.SpanKind.CLIENT,
            "consumer": trace.SpanKind.CONSUMER,
        }

    def span(self, name: str, kind: str, parent: str | None, attributes: dict[str, Any]) -> AbstractContextManager[Any]:
        context = self._propagator.extract({"traceparent": parent}) if parent else None
        clean = {k: v for k, v in attributes.items() if isinstance(v, str | bool | int | float)}
        return self.tracer.start_as_current_span(name, context=context, kind=self._kinds[kind], attributes=clean)

    def traceparent(self) -> str | None:
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier.get("traceparent")

    def is_recording(self) -> bool:
        return bool(self._trace.get_current_span().get_span_context().is_valid)

    def shutdown(self) -> None:
        self.provider.shutdown()


class _XRay(_Off):
    """X-Ray subsegments through powertools' Tracer (active inside Lambda)."""

    name = "xray"

    def __init__(self, tracer: Any = None) -> None:
        from aws_lambda_powertools import Tracer

        # botocore only: X-Ray's patch of everything it knows imports httpx at start-up, and httpx
        # imports rich and click where they are installed (~0.17 s of a cold start); an HTTP
        # action's call is inside the attempt's own "executor http" subsegment anyway. And only
        # once botocore.session is imported (every client is made from one, by boto3 or not): the
        # patch imports botocore.client, ~90 ms of a cold start that may answer without AWS (the
        # hook runs when botocore.session's import ends - botocore.client is whole by then; wrapt
        # is X-Ray's own dependency)
        self.tracer: Any = tracer or Tracer(service="hatchway", auto_patch=False)
        if tracer is None and not self.tracer.disabled:
            import wrapt

            wrapt.register_post_import_hook(lambda _: self.tracer.patch(["botocore"]), "botocore.session")

    @contextlib.contextmanager
    def _subsegment(self, name: str, attributes: dict[str, Any]) -> Iterator[Any]:
        with self.tracer.provider.in_subsegment(name[:200]) as subsegment:
            for key, value in attributes.items():
                if isinstance(value, str | bool | int | float):
                    subsegment.put_annotation(
                        re.sub(r"\W", "_", key), value if isinstance(value, str | bool) else str(value)
                    )
            yield subsegment

    def span(self, name: str, kind: str, parent: str | None, attributes: dict[str, Any]) -> AbstractContextManager[Any]:
        return self._subsegment(name, attributes)

    def traceparent(self) -> str | None:
        # X-Ray ids map onto W3C: "1-5759e988-bd862e3fe1be46a994272793" -> 5759e988bd862e3f...
        try:
            entity = self.tracer.provider.get_trace_entity()
        except Exception:  # no segment (outside Lambda): nothing to continue
            return None
        trace_id = getattr(entity, "trace_id", None)
        entity_id = getattr(entity, "id", None)
        if not trace_id or not entity_id:
            return None
        sampled = "01" if getattr(entity, "sampled", True) else "00"
        return f"00-{trace_id[2:].replace('-', '')}-{entity_id}-{sampled}"

    def is_recording(self) -> bool:
        return self.traceparent() is not None


_backend: _Off = _Off()


def configure_tracing(settings: Settings | None = None, *, exporter: Any = None, xray_tracer: Any = None) -> None:
    """Choose the tracing backend: from ``settings``, or OpenTelemetry into ``exporter`` (tests)."""
    global _backend
    previous = _backend
    if exporter is not None:
        _backend = _OpenTelemetry(exporter=exporter)
    elif xray_tracer is not None or (settings is not None and settings.observability.tracing == "xray"):
        _backend = _XRay(xray_tracer)
    elif settings is not None and settings.observability.tracing == "otlp":
        try:
            _backend = _OpenTelemetry(endpoint=settings.observability.otlp_endpoint)
        except ImportError:
            log.warning("HATCHWAY_TRACING=otlp needs OpenTelemetry: pip install 'hatchway[otel]'; tracing is off")
            _backend = _Off()
    else:
        _backend = _Off()
    if previous is not _backend:
        previous.shutdown()


def shutdown_tracing() -> None:
    """Flush and stop the exporter (at process exit)."""
    _backend.shutdown()


def is_enabled() -> bool:
    return _backend.name != "off"


def span(
    name: str, kind: str = "internal", parent: str | None = None, **attributes: Any
) -> AbstractContextManager[Any]:
    """A span around a block; ``parent`` (a W3C traceparent) continues a trace from elsewhere."""
    if _backend.name == "off":
        return _Off._noop
    return _backend.span(name, kind, valid_traceparent(parent), attributes)


def current_traceparent() -> str | None:
    """The current span as a W3C ``traceparent`` value, or None outside a trace."""
    return _backend.traceparent()


def valid_traceparent(value: str | None) -> str | None:
    """``value`` if it is a well-formed W3C traceparent (version 00, non-zero ids), else None."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None or set(match.group(1)) == {"0"} or set(match.group(2)) == {"0"}:
        return None
    return match.group(0)


def traced_handler(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A Lambda handler as an X-Ray segment when tracing is ``xray``; unchanged otherwise."""
    if isinstance(_backend, _XRay):
        wrapped: Callable[[Any, Any], Any] = _backend.tracer.capture_lambda_handler(handler)
        return wrapped
    return handler


def instrument(repos: Repos) -> Repos:
    """Give the repositories' operations spans (inside a trace only); a no-op while tracing is off."""
    if not is_enabled() or repos.__dict__.get("_traced"):
        return repos
    system = type(repos).__name__.removesuffix("Store").lower()
    for repo in (repos.tenants, repos.actions, repos.runs, repos.idempotency, repos.documents, repos.pipelines):
        for method in TRACED_STORE_METHODS:
            if hasattr(type(repo), method):  # each name is one repository's
                setattr(repo, method, _traced(f"store.{method}", getattr(repo, method), system))
    repos.__dict__["_traced"] = True
    return repos


def _traced(name: str, fn: Callable[..., Any], system: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        if not _backend.is_recording():
            return fn(*args, **kwargs)
        with span(name, "client", None, **{"db.system": system, "db.operation": name[6:]}):
            return fn(*args, **kwargs)

    call.__name__ = name
    return call
