"""Requests answered without powertools' per-request machinery, with the same result.

Resolving a request through powertools costs about as much CPU as an async submission's own work
(validate the body, resolve the action, insert the run): a proxy event, a linear route search,
a chain of middleware frames built per call, request and response validation layers, the
response builder. For every route whose arguments :class:`hatchway.api.validation.Plan` can
validate and whose answer is a ``Response[str]`` (so powertools' response validation passes it
through unchanged), in its common form - no query string, no cookies, a JSON object as the body
or none - this module does the same steps directly: the route is found by the same search in the
same order, its arguments are validated with the route's own pydantic fields, the route function
runs inside the same request scope (log correlation, span), an exception goes to the resolver's
own exception handlers and powertools' ``ResponseBuilder`` builds the answer. Any other request,
and any request whose arguments fail validation, goes through powertools unchanged, so every
error answer is the one powertools gives.

It reads private members of powertools' resolver (:data:`INTERNALS`), so ``pyproject.toml`` pins
``aws-lambda-powertools`` to one exact version: ``tests/unit/test_fastpath_pin.py`` fails in one
named place when a new release lacks one, and ``tests/functional/test_fastpath_parity.py`` runs
every route with the fast path on and off. Measured (bench P4, interleaved A/B): it saves about a
quarter of the gateway's CPU per submitted run.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools.event_handler.api_gateway import ResponseBuilder

from hatchway.api.scope import request_scope
from hatchway.api.validation import Plan

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
    from aws_lambda_powertools.event_handler.api_gateway import Route
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

    from hatchway.ports import Telemetry

#: the private members of powertools' resolver used here (tests/unit/test_fastpath_pin.py checks them)
INTERNALS = (
    "_static_routes",
    "_dynamic_routes",
    "_to_proxy_event",
    "_to_response",
    "_call_exception_handler",
    "_serializer",
    "_cors",
)


class DirectRoutes:
    """Answers the common form of every route that qualifies as powertools would (module docstring)."""

    def __init__(self, resolver: APIGatewayHttpResolver, telemetry: Telemetry, enabled: bool = True) -> None:
        self.resolver = resolver
        self.telemetry = telemetry
        # these are powertools internals: a release without them turns this shortcut off, and
        # every request takes powertools' own path (slower, never different)
        self.enabled = enabled and all(hasattr(resolver, name) for name in INTERNALS)
        self._plans: dict[int, Plan | None] = {}

    def _route(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        # the first route that matches, as powertools searches them (static routes first)
        for route in (*self.resolver._static_routes, *self.resolver._dynamic_routes):
            if route.method != method:
                continue
            match = route.rule.match(path)
            if match:
                return route, match.groupdict()
        return None

    def _plan(self, route: Route) -> Plan | None:
        key = id(route)  # routes live as long as the resolver
        if key not in self._plans:
            self._plans[key] = Plan.of(route) if qualifies(route) else None
        return self._plans[key]

    def answer(self, event: dict[str, Any], context: Any) -> dict[str, Any] | None:
        """The answer to ``event``, or None when it needs powertools' general path."""
        if (
            not self.enabled
            or event.get("rawQueryString")
            or event.get("queryStringParameters")
            or event.get("cookies")
            or event.get("isBase64Encoded")
        ):
            return None
        method = (event.get("requestContext", {}).get("http", {}).get("method") or "").upper()
        found = self._route(method, event.get("rawPath") or "")
        if found is None:
            return None
        route, route_args = found
        plan = self._plan(route)
        if plan is None:
            return None
        body: Any = None
        if event.get("body"):
            try:
                body = json.loads(event["body"])
            except (ValueError, RecursionError):  # powertools' path answers it (422)
                return None
            if not isinstance(body, dict):
                return None
        resolver = self.resolver
        proxy = cast("APIGatewayProxyEventV2", resolver._to_proxy_event(event))
        if plan.body is None and body is not None:
            return None
        values, errors = plan.check(route_args, proxy.resolved_headers_field, body)
        if errors:
            return None
        # route functions and exception handlers may read the request being resolved
        resolver.current_event = proxy
        resolver.lambda_context = context
        try:
            with request_scope(self.telemetry, proxy, route.openapi_path, values.get("project_id")) as current:
                response = cast("Response[Any]", resolver._to_response(route.func(**values)))
                if current is not None and hasattr(current, "set_attribute"):
                    current.set_attribute("http.response.status_code", response.status_code)
            builder: ResponseBuilder[Any] = ResponseBuilder(response, resolver._serializer, route)
        except Exception as exc:
            handled = resolver._call_exception_handler(exc, route)
            if handled is None:
                raise
            builder = handled
        return builder.build(proxy, resolver._cors)


def qualifies(route: Route) -> bool:
    """Whether ``route`` is answered as powertools would without its middleware stack: request
    validation on, and an answer typed ``Response[str]`` (powertools' response validation returns
    such a body as it is; a route without that annotation, such as a console file, may be re-encoded)."""
    answer = route.dependant.return_param
    return route.enable_validation is not False and answer is not None and answer.type_ is str
