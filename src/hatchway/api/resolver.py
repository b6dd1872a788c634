"""A powertools HTTP API resolver that can answer several requests at once.

Powertools keeps the request being resolved in shared places: ``current_event`` and
``lambda_context`` as attributes of the ``BaseRouter`` *class*, the routing ``context`` (route
arguments, the matched route) and the middleware stack frames on the instance. That is right in
Lambda, which hands one process one event at a time, and wrong in ``hatchway serve``, which
resolves short routes on the event loop and sync calls or idempotent submits in a thread pool:
two requests in flight would read each other's event (another tenant's body or headers) and one
request's ``clear_context`` would drop the route arguments of the other. Here each of those is
kept per thread; the rest of the resolver (routes, OpenAPI, exception handlers) is read-only
once built and stays shared.
"""

from __future__ import annotations

import threading
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver


class _PerThread:
    """A data descriptor whose value belongs to the thread that set it."""

    def __init__(self, default: Any = None, factory: type | None = None) -> None:
        self.default = default
        self.factory = factory

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, resolver: Any, owner: type | None = None) -> Any:
        if resolver is None:
            return self
        local: threading.local = resolver._per_thread
        if not hasattr(local, self.name):
            setattr(local, self.name, self.factory() if self.factory else self.default)
        return getattr(local, self.name)

    def __set__(self, resolver: Any, value: Any) -> None:
        setattr(resolver._per_thread, self.name, value)


class ThreadSafeHttpResolver(APIGatewayHttpResolver):
    """``APIGatewayHttpResolver`` with the request's state kept per thread."""

    current_event = _PerThread()
    lambda_context = _PerThread()
    context = _PerThread(factory=dict)
    processed_stack_frames = _PerThread(factory=list)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._per_thread = threading.local()
        super().__init__(*args, **kwargs)

    def resolve(self, event: Any, context: Any) -> dict[str, Any]:
        # powertools stores these on BaseRouter (shared by every thread); this thread's copies win
        self.current_event = self._to_proxy_event(dict(event))
        self.lambda_context = context
        return super().resolve(event, context)
